"""``python -m bionn`` runs the command line."""

import sys

from bionn.cli import main

sys.exit(main())
