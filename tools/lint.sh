#!/usr/bin/env bash
# The static checks, in the order that fails fastest: ruff lint, ruff format, mypy --strict on
# runtime/ (pyproject [tool.mypy]), import-linter's contracts (pyproject [tool.importlinter]:
# imports go one way, no cycles). make lint and tools/test.sh (first step) run exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-python3}}"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
# lint-imports through the same interpreter (importlinter has no __main__ module).
"$PY" -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'
