#!/usr/bin/env bash
# `make load`: 10,000 mixed requests at 50 concurrent against a running `make dev` (its
# apiUrl in .dev/demo.json), then a read-back proving that no acknowledged write is missing.
# Exits nonzero on any 5xx, transport error, unexpected status or missing write.
# Arguments go to scripts/load.py (--requests N, --concurrency N, --seed N).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV_DIR="${DEV_DIR:-.dev}"
export DEV_DIR
if [ ! -f "$DEV_DIR/demo.json" ] || [ ! -f "$DEV_DIR/env" ]; then
  echo "error: no $DEV_DIR/demo.json: start \`make dev\` first (in another terminal), then run \`make load\`" >&2
  exit 2
fi
api="$(python3 -c 'import json; print(json.load(open("'"$DEV_DIR"'/demo.json"))["apiUrl"])')"
if ! curl -s -o /dev/null "$api/.well-known/jwks.json"; then
  echo "error: nothing answers at $api ($DEV_DIR/demo.json): start \`make dev\` first (in another terminal)" >&2
  exit 2
fi
exec python3 scripts/load.py "$@"
