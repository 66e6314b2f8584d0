#!/usr/bin/env python3
"""Per-step overhead of a LangGraph agent loop, against Arbiter's driver running the same loop.

The loop: a scripted model asks for one `read_crm` call per turn, ten times, then answers —
21 agent steps (11 model calls, 10 tool calls), no network, no LLM. LangGraph runs it as a
two-node graph (model -> tools -> model ...) with an in-memory checkpointer (`InMemorySaver`),
which is what makes its runs resumable, the nearest thing to Arbiter recording every step.
Arbiter runs it with `benches::LoopModel` and an in-process tool, authorizing every model call,
tool call and budget reservation with Cedar and hashing every event
(`cargo bench -p benches --bench driver`).

Not part of CI. Run from the repository root:

    python3 -m venv /tmp/lg && /tmp/lg/bin/pip install langgraph
    /tmp/lg/bin/python benches/peers/langgraph_loop.py            # both, and the ratio
    /tmp/lg/bin/python benches/peers/langgraph_loop.py --no-arbiter

`--history N` pre-fills the state with N messages, the "message history" case.
"""

import argparse
import operator
import re
import statistics
import subprocess
import sys
import time
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

TOOL_CALLS = 10
STEPS = 2 * TOOL_CALLS + 1


class State(TypedDict):
    messages: Annotated[list, operator.add]


def model(state: State) -> dict:
    done = sum(1 for m in state["messages"] if m["role"] == "tool")
    if done < TOOL_CALLS:
        call = {"name": "read_crm", "args": {"customer_id": f"c-{done}"}}
        return {"messages": [{"role": "assistant", "tool_calls": [call]}]}
    return {"messages": [{"role": "assistant", "content": "done"}]}


def tools(state: State) -> dict:
    call = state["messages"][-1]["tool_calls"][0]
    result = {"name": "Ada", "tier": "gold", "id": call["args"]["customer_id"]}
    return {"messages": [{"role": "tool", "content": result}]}


def route(state: State) -> str:
    return "tools" if state["messages"][-1].get("tool_calls") else END


def build():
    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_node("tools", tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=InMemorySaver())


def langgraph_per_step(runs: int, history: int) -> float:
    app = build()
    prefix = [{"role": "user", "content": f"earlier message {i}"} for i in range(history)]
    times = []
    for i in range(runs):
        config = {"configurable": {"thread_id": f"t{i}"}, "recursion_limit": 100}
        start = time.perf_counter()
        out = app.invoke({"messages": prefix + [{"role": "user", "content": "loop"}]}, config)
        times.append(time.perf_counter() - start)
        assert out["messages"][-1]["content"] == "done"
    return statistics.median(times) / STEPS


def arbiter_per_step() -> float:
    out = subprocess.run(
        ["cargo", "bench", "-q", "-p", "benches", "--bench", "driver", "--", "scripted_loop"],
        capture_output=True, text=True, check=True,
    ).stdout
    # criterion: "time:   [low median high]" with units
    m = re.search(r"scripted_loop_10_tool_calls\s+time:\s+\[\S+ \S+ (\S+) (\S+)", out)
    if not m:
        sys.exit(f"could not read the criterion output:\n{out}")
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return float(m.group(1)) * scale / STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--no-arbiter", action="store_true")
    args = parser.parse_args()
    lg = langgraph_per_step(args.runs, args.history)
    print(f"langgraph: {lg * 1e6:.1f} µs per step ({STEPS} steps, history {args.history})")
    if args.no_arbiter:
        return
    ar = arbiter_per_step()
    print(f"arbiter:   {ar * 1e6:.1f} µs per step ({STEPS} steps, every one authorized and recorded)")
    print(f"ratio:     arbiter is {lg / ar:.1f}x faster per step")


if __name__ == "__main__":
    main()
