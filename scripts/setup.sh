#!/usr/bin/env bash
# Create .venv (Python 3.11) with catdog and its dev tools installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: Python 3.11 is needed (tried python3.11, python3, python)." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "setup: installing catdog and its dependencies (about a minute and a half)"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "setup: done. Activate with: source .venv/bin/activate"
