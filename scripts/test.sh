#!/usr/bin/env bash
# The test command: lint, format check, type check, then pytest (default suite: everything not
# marked slow). Extra arguments go to pytest. pytest's exit 5 ("no tests ran") is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
set -e
ruff check src tests
ruff format --check src tests
mypy
set +e
python -m pytest -m "not slow" "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
