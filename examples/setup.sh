#!/usr/bin/env bash
# Everything the tests need besides Rust: the Python example's packages and the npm MCP servers.
set -euo pipefail
cd "$(dirname "$0")"
./python/setup.sh
./mcp/setup.sh
