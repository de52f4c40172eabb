"""``python -m medseg_fast`` runs the ``medseg-fast`` command line (see :mod:`medseg_fast.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
