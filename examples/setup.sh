#!/usr/bin/env bash
# Everything the tests need besides Rust: the Python example's packages, the npm MCP servers, and
# the npm packages the report's browser test drives Chromium with.
set -euo pipefail
cd "$(dirname "$0")"
./python/setup.sh
./mcp/setup.sh
./report/setup.sh
