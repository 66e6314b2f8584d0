"""A LangGraph agent that asks Arbiter before every model and tool call.

The agent is a two-node LangGraph graph (model -> tools -> model ...). Arbiter runs elsewhere
(`arbiter serve`); this process opens a session over its decision API, proposes each step before
acting, reports each result, and streams the session's events over Server-Sent Events while it
runs. A denied tool call never runs: the model is told which policy refused it.

    python refund_agent.py --url http://127.0.0.1:8700 --token "$(cat carol.token)" --session t-1

The model is LangChain's scripted `GenericFakeChatModel`, so the example needs no API key; swap in
any LangChain chat model and nothing else changes. The last line printed is a JSON summary.
"""

import argparse
import json
import threading
import urllib.request

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph


class Arbiter:
    """The decision API, over the standard library's HTTP client."""

    def __init__(self, url, token, session):
        self.url, self.token, self.session = url.rstrip("/"), token, session

    def _post(self, path, body):
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)

    def open(self, agent, budget, request):
        return self._post("/v1/sessions", {"id": self.session, "agent": agent, "budget": budget, "request": request})

    def step(self, **intent):
        return self._post(f"/v1/sessions/{self.session}/steps", {"intent": intent})

    def stream(self, seen):
        """Appends (seq, kind) of every event to `seen` until the session ends."""
        req = urllib.request.Request(
            f"{self.url}/v1/sessions/{self.session}/events",
            headers={"Authorization": "Bearer " + self.token},
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            frame = {}
            for raw in res:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "id" in frame:
                        seen.append((int(frame["id"]), frame.get("event")))
                        print(f"  event {frame['id']}: {frame.get('event')}", flush=True)
                    frame = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    frame[key] = value.strip()


# The tools: plain functions, run only when Arbiter allows the call.
def lookup_order(order_id):
    return {"order_id": order_id, "status": "delivered", "total": 4200}


def issue_refund(order_id, amount):
    return {"refund_id": "rf-" + order_id, "amount": amount}


TOOLS = {"lookup_order": lookup_order, "issue_refund": issue_refund}


def build(arbiter, model, decisions):
    def call_model(state):
        asked = arbiter.step(intent="call_model", model="small", estimated_tokens=500, estimated_cost=100)
        decisions.append(("call_model", asked["decision"]["effect"]))
        if not asked["effects"]:
            return {"messages": [AIMessage(content="Arbiter refused the model call.")]}
        call_id = asked["effects"][0]["call_id"]
        reply = model.invoke(state["messages"])
        arbiter.step(
            intent="model_responded", call_id=call_id, input_tokens=400, output_tokens=60, cost=90,
            output={"content": reply.content, "tool_calls": [{"name": c["name"], "args": c["args"]} for c in reply.tool_calls]},
        )
        return {"messages": [reply]}

    def call_tools(state):
        out = []
        for call in state["messages"][-1].tool_calls:
            asked = arbiter.step(intent="call_tool", tool=call["name"], input=call["args"])
            effect = (asked.get("decision") or {}).get("effect", asked["outcome"])
            decisions.append((call["name"], effect))
            if not asked["effects"]:
                policies = [p["id"] for p in (asked.get("decision") or {}).get("policies", [])]
                out.append(ToolMessage(content=f"refused by {', '.join(policies) or asked['outcome']}", tool_call_id=call["id"]))
                continue
            call_id = asked["effects"][0]["call_id"]
            result = TOOLS[call["name"]](**call["args"])
            arbiter.step(intent="tool_returned", call_id=call_id, output=result)
            out.append(ToolMessage(content=json.dumps(result), tool_call_id=call["id"]))
        return {"messages": out}

    def route(state):
        return "tools" if state["messages"][-1].tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", call_tools)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8700")
    p.add_argument("--token", required=True)
    p.add_argument("--session", default="langgraph-1")
    args = p.parse_args()

    request = "Order ord-7 arrived broken: refund it in full."
    # What the (scripted) model will say, turn by turn.
    model = GenericFakeChatModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "lookup_order", "args": {"order_id": "ord-7"}, "id": "c1"}]),
        AIMessage(content="", tool_calls=[{"name": "issue_refund", "args": {"order_id": "ord-7", "amount": 42000}, "id": "c2"}]),
        AIMessage(content="I could not refund $420: the refund policy refused it."),
    ]))

    arbiter = Arbiter(args.url, args.token, args.session)
    opened = arbiter.open("support@shopco", "shopco", request)
    print(f"session {args.session}: {opened['session']['status']}", flush=True)
    seen = []
    streamer = threading.Thread(target=arbiter.stream, args=(seen,), daemon=True)
    streamer.start()

    decisions = []
    final = build(arbiter, model, decisions).invoke({"messages": [HumanMessage(content=request)]})
    answer = final["messages"][-1].content
    done = arbiter.step(intent="complete", answer=answer)
    streamer.join(timeout=10)
    print(json.dumps({"status": done["status"], "answer": answer, "decisions": decisions, "streamed": seen}))


if __name__ == "__main__":
    main()
