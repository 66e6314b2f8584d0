#!/usr/bin/env bash
# Installs the pinned npm packages the report's browser test uses (playwright-core to drive Debian's
# Chromium, axe-core for accessibility; see examples/report/package-lock.json) into
# target/report-browser. Idempotent: a second run with the same lock file does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/report-browser
stamp="$dir/.lock"
if [ -d "$dir/node_modules" ] && cmp -s examples/report/package-lock.json "$stamp"; then
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
cp examples/report/package.json examples/report/package-lock.json "$dir/"
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
cp examples/report/package-lock.json "$stamp"
