#!/usr/bin/env bash
# `make bench-segments`: creating a 25,000-member segment through the segments handler
# (tests/benches/segments_create.rs, release profile) against the same 25,000 items written
# by boto3's batch_writer() (scripts/bench_boto3_segments.py), both against one throwaway
# local server. Prints both rates (ids/s, median of 3) and the ratio ours/boto3.
# The local server is not DynamoDB: the figures compare clients against the same emulator.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-bench.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
echo "==> local DynamoDB-compatible server on 127.0.0.1:$port"

ours_out=target/bench-segments-ours.txt
boto3_out=target/bench-segments-boto3.txt

echo "==> cargo bench -p integration-tests --bench segments_create --locked"
cargo bench -p integration-tests --bench segments_create --locked | tee "$ours_out"

echo "==> boto3 batch_writer"
"$VENV/bin/python" scripts/bench_boto3_segments.py | tee "$boto3_out"

value() { # value KEY FILE: the value of the first `KEY=value` on a line starting with KEY=
  sed -n "s/^$1=\([0-9.]*\).*/\1/p" "$2" | head -n1
}
ours="$(value ours_ids_per_s "$ours_out")"
boto3="$(value boto3_ids_per_s "$boto3_out")"
requests="$(grep '^requests_total=' "$ours_out" | head -n1 || true)"
if [ -z "$ours" ] || [ -z "$boto3" ]; then
  echo "error: a rate is missing (ours='$ours', boto3='$boto3'); see the output above" >&2
  exit 1
fi
ratio="$(awk -v a="$ours" -v b="$boto3" 'BEGIN { printf "%.2f", a / b }')"

echo "==> result (25,000 ids, median of 3 runs each)"
echo "ours_ids_per_s=$ours"
echo "boto3_ids_per_s=$boto3"
echo "ratio_ours_over_boto3=$ratio"
echo "$requests"
