#!/usr/bin/env bash
# Create .venv with pixel-m4 (editable) and its dev tools. Nothing else needs installing by hand:
# fonts come as wheels, Pango/Cairo are the system's (see README if they are missing).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
py=.venv/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$py" -m pip install torch
  else
    # A plain `pip install torch` on Linux pulls the multi-GB CUDA build; CPU machines get the CPU wheel.
    "$py" -m pip install "torch==2.13.0" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"$py" -m pip install -e ".[dev]"
