#!/usr/bin/env bash
# The side-by-side HTTP benchmark (BENCHMARK.md). Installs what it needs, runs every server on
# loopback, writes benchmark-results/<mode>-<time>.json, then the tables and plots.
#   ./scripts/benchmark.sh           full run, under 10 minutes
#   ./scripts/benchmark.sh --quick   c=32, one repetition, under 2 minutes
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null || ! command -v hey >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk hey >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends wrk hey >/dev/null; }
  else
    echo "benchmark: wrk is required (Debian package wrk)" >&2
    exit 1
  fi
fi
make --no-print-directory install-dev >/dev/null
.venv/bin/pip install --quiet -r requirements-bench.txt
.venv/bin/python scripts/bench/run.py "$@"
latest=$(ls -t benchmark-results/*.json | head -1)
.venv/bin/python scripts/bench/report.py "$latest"
