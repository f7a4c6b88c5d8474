#!/usr/bin/env bash
# Run the whole test suite: unit, integration, cluster (real processes), browser (chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Debian chromium for the browser tests ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver) >/dev/null \
      || echo "test: could not install chromium" >&2
  fi
fi
mkdir -p artifacts/screenshots
exec .venv/bin/python -m pytest "$@"
