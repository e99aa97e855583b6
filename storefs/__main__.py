"""``python -m storefs`` is the ``storefs`` command."""

from storefs.cli import main

raise SystemExit(main())
