#!/usr/bin/env bash
# Set up the development environment (./.venv) and run every quality gate and the tests:
# ruff check, ruff format --check, mypy --strict src, pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy --strict src
.venv/bin/python -m pytest "$@"
