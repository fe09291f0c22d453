#!/usr/bin/env bash
# Set up ./.venv (if needed) and run the offline demo: the embedded dev server, wrapped LLM
# clients answered locally, a metered stream and timed jobs, then the totals the server computed.
# Extra arguments go to `dodo-ingest demo` (e.g. --faults 5xx=0.2,429=0.1,lost_ack=0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
.venv/bin/dodo-ingest demo "$@"
