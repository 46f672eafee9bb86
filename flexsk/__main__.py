"""``python -m flexsk``: the same as the ``flexsk`` command."""

import sys

from .cli import main

__all__ = []

sys.exit(main())
