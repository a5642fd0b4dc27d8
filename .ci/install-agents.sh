#!/usr/bin/env bash
# Install the pinned Claude Code and Codex CLIs into ./node_modules (never globally), so the
# agent tests drive the real binaries. Versions come from package.json; nothing is saved back.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "install-agents: npm not found; install Node.js 20+ (the agent CLI tests will be skipped)" >&2
  exit 1
fi
npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error
for bin in claude codex; do
  if [ ! -x "node_modules/.bin/$bin" ]; then
    echo "install-agents: node_modules/.bin/$bin missing after npm install" >&2
    exit 1
  fi
  echo "install-agents: $bin $(node_modules/.bin/$bin --version)"
done
