#!/usr/bin/env bash
# Create .venv with pixel-m4 (editable) and its dev tools. Nothing else needs installing by hand:
# fonts come as wheels, Pango/Cairo are the system's (see README if they are missing).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
py=.venv/bin/python
torch_cpu_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$py" -m pip install torch
  elif "$py" -c "import urllib.request as u; u.urlopen('$torch_cpu_index/', timeout=5)" 2>/dev/null; then
    # A plain `pip install torch` on Linux pulls the multi-GB CUDA build; CPU machines get the CPU wheel.
    "$py" -m pip install "torch==2.13.0" --index-url "$torch_cpu_index" --extra-index-url https://pypi.org/simple
  else
    # No route to the PyTorch index (e.g. a PyPI mirror only): take torch 2.13.0 from the configured
    # index, which on such CPU machines serves the CPU wheel.
    echo "install.sh: $torch_cpu_index unreachable; installing torch==2.13.0 from the configured pip index"
    "$py" -m pip install "torch==2.13.0"
  fi
fi
# Strict editable mode: only the packaged files (root modules, tools/) are importable, as from a
# wheel, so `pixel_m4.tests` / `pixel_m4.examples` are not. A new module needs a rerun of this line.
"$py" -m pip install -e ".[dev]" --config-settings editable_mode=strict
