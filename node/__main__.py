"""``python -m node``: the same as the ``spacepanda`` console script."""

from node.cli import main

raise SystemExit(main())
