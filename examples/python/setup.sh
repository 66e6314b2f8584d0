#!/usr/bin/env bash
# Installs the Python example's pinned dependencies (LangGraph and what it needs) into a virtual
# environment at target/pyenv, which cli/tests/python_client.rs runs the example with. Idempotent:
# a second run with the same requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
env_dir=target/pyenv
stamp="$env_dir/.requirements"
if [ -x "$env_dir/bin/python" ] && cmp -s examples/python/requirements.txt "$stamp"; then
  exit 0
fi
python3 -m venv "$env_dir"
"$env_dir/bin/pip" install --quiet --disable-pip-version-check -r examples/python/requirements.txt
cp examples/python/requirements.txt "$stamp"
