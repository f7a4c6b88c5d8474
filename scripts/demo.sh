#!/usr/bin/env bash
# Start the demo shop: 3 tills on 127.0.0.1:5001-5003 with a sample catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m app demo "$@"
