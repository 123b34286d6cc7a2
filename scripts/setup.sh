#!/usr/bin/env bash
# Create .venv with exactly the versions uv.lock pins: catdog, its dev tools and TensorFlow's CPU
# build (--cuda: the CUDA build instead). Safe to run again; a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/setup.sh [--cpu | --cuda]"
    echo "  Installs the locked environment into .venv (uv sync --frozen)."
    echo "  --cpu   TensorFlow's CPU build (default, what CI tests)"
    echo "  --cuda  TensorFlow's CUDA build, for a machine with an NVIDIA GPU"
}
build=cpu
case "${1:-}" in
    "" | --cpu) ;;
    --cuda) build=cuda ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: error: unknown option '$1'; run scripts/setup.sh --help" >&2; exit 2 ;;
esac

# The Python range is pyproject.toml's requires-python: one place says which Pythons are supported.
supports='
import sys, tomllib
spec = tomllib.load(open("pyproject.toml", "rb"))["project"]["requires-python"]
have = sys.version_info[:2]
ops = {">=": lambda v: have >= v, "<": lambda v: have < v, "==": lambda v: have == v}
for clause in spec.split(","):
    op = next(o for o in (">=", "<", "==") if clause.strip().startswith(o))
    version = tuple(int(x) for x in clause.strip()[len(op):].split(".")[:2])
    if not ops[op](version):
        sys.exit(1)
'
requires=$(sed -n 's/^requires-python = "\([^"]*\)".*/\1/p' pyproject.toml)
python=""
for candidate in .venv/bin/python python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$supports" 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: error: catdog needs Python $requires (pyproject.toml); none of python3.11, python3, python is." >&2
    exit 1
fi

# uv itself is pinned in the lock (dev group); bootstrap that version once, then the synced
# environment keeps it at .venv/bin/uv.
uv_version=$(sed -n 's/.*"uv==\([0-9.]*\)".*/\1/p' pyproject.toml)
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
if [ "$(.venv/bin/uv --version 2>/dev/null)" != "uv $uv_version" ]; then
    echo "setup: installing uv $uv_version into .venv"
    # pip's own notes (e.g. an unreachable extra index in a machine's pip.conf) only on failure
    if ! log=$(.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$uv_version" 2>&1); then
        echo "$log" >&2
        exit 1
    fi
fi

echo "setup: installing the locked environment (uv.lock, TensorFlow $build build)"
UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=.venv \
    .venv/bin/uv sync --frozen --quiet --extra "$build" --python .venv/bin/python
echo "setup: done. Activate with: source .venv/bin/activate"
