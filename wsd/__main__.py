"""`python -m wsd`: the `wsd` command (wsd/cli.py)."""

import sys

from wsd.cli import main

sys.exit(main())
