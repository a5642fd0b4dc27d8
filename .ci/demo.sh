#!/usr/bin/env bash
# Set up fapo and run the offline demo end to end: the built-in agent optimizes demo-qa on the
# simulated task model (no LLM, no network), then prints where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
.venv/bin/fapo validate demo-qa
.venv/bin/fapo run demo-qa --agent builtin "$@"
