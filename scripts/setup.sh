#!/usr/bin/env bash
# Create ./.venv (if missing) and install the package with every extra and the dev tools.
# Uses $PYTHON if set, else python3; it must be Python 3.11 or newer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "dodo-ingest needs Python 3.11 or newer; $python is $("$python" -V 2>&1)." >&2
    echo "Run again with PYTHON=/path/to/python3.11 (or newer)." >&2
    exit 1
  fi
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[all,dev]'
