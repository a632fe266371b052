"""Shared test setup.

examples/ goes on sys.path: the example scripts (which several tests load by path) import
`tiny_causal_lm` from their own folder, as they do when run, and tests import it from there too.
"""

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
