"""``python -m effalign.testbed build [...]`` (same as ``python -m effalign testbed build``)."""

import sys

from .build import main

sys.exit(main())
