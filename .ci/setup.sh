#!/usr/bin/env bash
# Set up everything fapo needs on a fresh machine, idempotently.
#   bash .ci/setup.sh          core: .venv with fapo and its dev tools (enough for the demo)
#   bash .ci/setup.sh --all    also what the whole test suite drives for real: the pinned
#                              Claude Code and Codex CLIs (npm, project-local), Debian's
#                              Chromium for the HTML report test, cwe2 for the data-prep test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
if [ "${1:-}" = "--all" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check 'cwe2==3.0.0'
  bash .ci/install-agents.sh
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium fonts-dejavu-core >/dev/null
    else
      echo "setup: chromium missing and not root; the browser test will be skipped" >&2
    fi
  fi
fi
echo "setup: fapo is installed in .venv; run \`source .venv/bin/activate\` to put it on PATH (or call .venv/bin/fapo)" >&2
