"""Entry point: ``python bench/run.py [--stores ...] [--size 1G] [--quick]`` (see README.md).

Runs from any directory: the repository root goes on ``sys.path`` so that ``bench`` and the
test-server launchers of ``tests/servers`` import as packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
