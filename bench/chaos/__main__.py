"""``python bench/chaos [--help]``: the chaos run (see `chaos.cli`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, where `chaos` lives

from chaos.cli import main  # importable once bench/ is on the path

sys.exit(main())
