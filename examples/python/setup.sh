#!/usr/bin/env bash
# Installs the Python example's pinned dependencies (LangGraph and what it needs) into
# target/pyenv, whose bin/python cli/tests/python_client.rs runs the example with. Idempotent: a
# second run with the same requirements does nothing. Uses a virtual environment; where python3
# has no `venv` (Debian without python3-venv), installs into target/pyenv/lib with pip and makes
# bin/python a wrapper that puts it on the path.
set -euo pipefail
cd "$(dirname "$0")/../.."
env_dir=target/pyenv
stamp="$env_dir/.requirements"
if [ -x "$env_dir/bin/python" ] && cmp -s examples/python/requirements.txt "$stamp"; then
  exit 0
fi
rm -rf "$env_dir"
pip_flags=(--quiet --disable-pip-version-check -r examples/python/requirements.txt)
if python3 -m venv "$env_dir" 2>/dev/null; then
  "$env_dir/bin/pip" install "${pip_flags[@]}"
else
  rm -rf "$env_dir"
  mkdir -p "$env_dir/bin"
  python3 -m pip install --target "$env_dir/lib" "${pip_flags[@]}"
  lib="$(cd "$env_dir/lib" && pwd)"
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 "$@"\n' "$lib" >"$env_dir/bin/python"
  chmod +x "$env_dir/bin/python"
fi
cp examples/python/requirements.txt "$stamp"
