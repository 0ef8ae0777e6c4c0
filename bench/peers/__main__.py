"""``python bench/peers [--help]``: the peers run (see `peers.cli`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, where `peers` lives

from peers.cli import main  # importable once bench/ is on the path

sys.exit(main())
