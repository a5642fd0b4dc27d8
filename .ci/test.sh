#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (this is what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh --all
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # strict on the loop's core modules (pyproject.toml [tool.mypy])
.venv/bin/python -m pytest -p no:cacheprovider "$@"
