"""`python -m evosparse` runs the command line."""

import sys

from evosparse.cli import main

sys.exit(main())
