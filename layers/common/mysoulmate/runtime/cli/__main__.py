"""`python -m mysoulmate.runtime.cli`: the same as the `mysoulmate` console script."""

import sys

from mysoulmate.runtime.cli import main

sys.exit(main())
