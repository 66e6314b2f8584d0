"""The official Python MCP SDK's client (mcp 2.x) against `arbiter mcp-gateway` over stdio.

Usage: python_client.py MODE FOLDER ARBITER ARG...   (MODE: auto = server/discover at 2026-07-28
with the fallback to initialize; legacy = initialize at 2025-11-25). Prints one JSON object: the
negotiated version, the tools listed, and what a read, a denied read and an approved write gave.
"""
import asyncio
import json
import os
import sys

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

mode, folder, command, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
asked = []


async def approve(context, params):
    asked.append(params.message)
    return types.ElicitResult(action="accept", content={"approve": True})


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def main():
    # The SDK passes a child only a safe list of variables; the gateway's config reads these two.
    env = {**get_default_environment(), **{k: os.environ[k] for k in ("WORKSPACE", "MCP_SERVERS")}}
    server = StdioServerParameters(command=command, args=args, env=env)
    async with Client(server, mode=mode, elicitation_callback=approve) as client:
        tools = await client.list_tools()
        read = await client.call_tool("fs__read_text_file", {"path": f"{folder}/work/notes.txt"})
        denied = await client.call_tool("fs__read_text_file", {"path": "/etc/hostname"})
        wrote = await client.call_tool(
            "fs__write_file", {"path": f"{folder}/work/from-python.txt", "content": "hi"}
        )
        print(json.dumps({
            "protocol": client.protocol_version,
            "tools": sorted(t.name for t in tools.tools),
            "read": {"error": bool(read.is_error), "text": text(read),
                     "structured": read.structured_content is not None},
            "denied": {"error": bool(denied.is_error), "text": text(denied)},
            "wrote": {"error": bool(wrote.is_error), "text": text(wrote)},
            "asked": len(asked),
        }))


asyncio.run(main())
