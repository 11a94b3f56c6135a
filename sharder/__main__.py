"""``python -m sharder``: see ``sharder.cli``."""

import sys

from sharder.cli import main

sys.exit(main())
