#!/usr/bin/env bash
# `make build`: `sam build` of every function for AWS (arm64, release, through cargo-lambda
# and zig from the venv; offline once crates are cached), then each bootstrap's size.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ensure_venv
export PATH="$VENV/bin:$PATH"
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  echo "==> adding the aarch64-unknown-linux-gnu rust target (first use only)"
  rustup target add aarch64-unknown-linux-gnu
fi
# One target dir for every function (and for `make test`'s host builds).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
sam build --template-file template.yaml "$@"
echo "==> bootstrap sizes (stripped, arm64; budget 8 MB each: docs/PERFORMANCE.md \"Binary sizes\")"
status=0
budget=8388608
for f in .aws-sam/build/*/bootstrap; do
  size=$(stat -c %s "$f")
  fn=$(basename "$(dirname "$f")")
  awk -v fn="$fn" -v s="$size" -v b="$budget" 'BEGIN { printf "%-24s %9d bytes  %5.2f MB  (budget %.0f MB)\n", fn, s, s / 1048576, b / 1048576 }'
  if [ "$size" -gt "$budget" ]; then echo "    over its budget"; status=1; fi
done
exit "$status"
