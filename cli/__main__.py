"""``python -m cli``: the ``nowcast`` command without an installed console script."""

from cli import main

raise SystemExit(main())
