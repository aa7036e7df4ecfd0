"""``python -m effalign``: see :mod:`effalign.cli`."""

from .cli import main

raise SystemExit(main())
