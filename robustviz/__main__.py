"""``python -m robustviz``: the command line (``robustviz.app.cli``), for when the script is not on PATH."""

import sys

from .app.cli import main

sys.exit(main())
