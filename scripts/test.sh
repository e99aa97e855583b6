#!/usr/bin/env bash
# scripts/test.sh [PYTEST ARGS...]
#
# Sets everything up for the tests (scripts/setup.sh --test: system packages, the venv
# with the test extras, the local test servers) and runs the whole test suite: lint and
# types first (ruff, mypy strict on storefs/), then pytest on real servers and real kernel
# mounts, in parallel.  Needs root (mounts, apt).  Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh --test
echo "test.sh: ruff"
lint=(storefs tests)
[[ -d bench ]] && lint+=(bench)
.venv/bin/ruff check "${lint[@]}"
echo "test.sh: mypy (strict) on storefs/"
.venv/bin/mypy storefs
workers=${STOREFS_TEST_WORKERS:-4}
echo "test.sh: pytest with $workers workers"
exec .venv/bin/python -m pytest -n "$workers" --durations=25 "$@"
