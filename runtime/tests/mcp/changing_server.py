"""A minimal MCP server over stdio (protocol 2025-11-25) whose tool list grows: after its first
tools/call it adds `shout` and says so with notifications/tools/list_changed. For the gateway's
test that a changed list is re-read before the new tool can be called."""
import json
import sys

ECHO = {"name": "echo", "description": "Echo the text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}
SHOUT = {"name": "shout", "description": "Echo the text in capitals.",
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}
tools = [ECHO]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if mid is None:
        continue
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": True}},
                  "serverInfo": {"name": "changing", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": tools}
    elif method == "tools/call":
        params = msg["params"]
        text = params.get("arguments", {}).get("text", "")
        if params["name"] == "shout":
            text = text.upper()
        result = {"content": [{"type": "text", "text": text}]}
        if SHOUT not in tools:
            tools.append(SHOUT)
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no " + str(method)}})
        continue
    send({"jsonrpc": "2.0", "id": mid, "result": result})
