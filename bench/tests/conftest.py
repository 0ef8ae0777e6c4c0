"""The chaos run's package lives in bench/ (not an installed member): make it importable."""

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parent.parent)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
