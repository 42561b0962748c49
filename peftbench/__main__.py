"""``python -m peftbench``: the same command line as the ``peftbench`` script."""

import sys

from peftbench.cli import main

sys.exit(main())
