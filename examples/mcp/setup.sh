#!/usr/bin/env bash
# Installs the pinned npm MCP servers the gateway's tests run (server-filesystem, -everything,
# -memory; see examples/mcp/servers/package-lock.json) into target/mcp-servers with the machine's
# Node.js. Idempotent: a second run with the same lock file does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/mcp-servers
stamp="$dir/.lock"
if [ -d "$dir/node_modules" ] && cmp -s examples/mcp/servers/package-lock.json "$stamp"; then
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
cp examples/mcp/servers/package.json examples/mcp/servers/package-lock.json "$dir/"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
cp examples/mcp/servers/package-lock.json "$stamp"
