"""``python -m ckl``: the ``ckl`` command line, as the console script runs it."""

import sys

from ckl.cli import main

sys.exit(main())
