"""``python -m robustviz``: the command line (``robustviz.cli``), for when the script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
