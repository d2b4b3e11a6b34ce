"""`python -m fedcore.cli`: the `fedcore` console script without the installed entry point."""

import sys

from fedcore.cli import main

sys.exit(main())
