#!/usr/bin/env bash
# `make capacity`: cost per call of every route and the scale simulation (scripts/capacity.py),
# written to docs/CAPACITY.md. Uses the running stack of DEV_DIR when one answers there (a
# `make dev`); otherwise starts its own (scripts/dev.sh on free ports, DEV_DIR .dev-capacity,
# no reloads) and stops it afterwards. Arguments go to scripts/capacity.py (--calls N, --scale X,
# --load-requests N, --no-load).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
export PATH="$VENV/bin:$PATH"

answers() {
  [ -f "$1/demo.json" ] && curl -s -o /dev/null \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apiUrl"])' "$1/demo.json")/.well-known/jwks.json"
}

if [ -n "${DEV_DIR:-}" ] && answers "$DEV_DIR"; then
  echo "==> measuring the running stack of $DEV_DIR"
  exec python3 scripts/capacity.py "$@"
fi

# Usage sums flushed every 5 s per instance, as deployed (make dev writes them on every call).
export DEV_DIR=.dev-capacity DEV_NO_RELOAD=1 DEV_USAGE_FLUSH_SECONDS="${DEV_USAGE_FLUSH_SECONDS:-5}"
DEV_DYNAMODB_PORT="$(free_port)"
DEV_API_PORT="$(free_port)"
export DEV_DYNAMODB_PORT DEV_API_PORT
mkdir -p "$DEV_DIR"
rm -f "$DEV_DIR/demo.json"
echo "==> starting a stack (scripts/dev.sh, DEV_DIR=$DEV_DIR, API port $DEV_API_PORT; output: $DEV_DIR/dev.out)"
scripts/dev.sh >"$DEV_DIR/dev.out" 2>&1 &
DEV_PID=$!
trap 'kill "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 1800); do
  grep -q "Local stack ready" "$DEV_DIR/dev.out" 2>/dev/null && break
  if ! kill -0 "$DEV_PID" 2>/dev/null; then
    tail -n 30 "$DEV_DIR/dev.out" >&2
    echo "error: the stack did not start; see $DEV_DIR/dev.out" >&2
    exit 1
  fi
  sleep 1
done
answers "$DEV_DIR" || { echo "error: the stack did not become ready; see $DEV_DIR/dev.out" >&2; exit 1; }
python3 scripts/capacity.py "$@"
