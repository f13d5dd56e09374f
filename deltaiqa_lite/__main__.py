"""``python -m deltaiqa_lite`` runs the ``deltaiqa-lite`` command line."""

import sys

from deltaiqa_lite.cli import main

if __name__ == "__main__":
    sys.exit(main())
