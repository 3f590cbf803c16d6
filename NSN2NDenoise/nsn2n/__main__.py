"""``python -m nsn2n``: the same as the ``nsn2n`` command."""

import sys

from .cli import main

sys.exit(main())
