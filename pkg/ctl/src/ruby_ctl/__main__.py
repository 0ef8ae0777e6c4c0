"""``python -m ruby_ctl`` is ``rubyctl``."""

import sys

from ruby_ctl.cli import main

sys.exit(main())
