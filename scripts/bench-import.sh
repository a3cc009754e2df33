#!/usr/bin/env bash
# `make bench-import`: a bulk import of IMPORT_BENCH_ROWS (default 100,000) ~1 KB rows through
# the import worker (tests/benches/import.rs, release profile: S3 read, row judging, writes)
# against boto3's batch_writer() writing the same items (scripts/bench_boto3_import.py), both
# on one throwaway local server. Prints both rates and the ratio ours/boto3, our requests,
# write units per row and the worker's peak RSS. IMPORT_BENCH_ROW_BYTES sets the row width
# (800); IMPORT_BENCH_SKIP_BOTO3=1 runs our side only; DEV_DYNAMODB_SCALE loads the server's
# per-key limits as that many times the rate would on AWS. The local server is not DynamoDB: the rates
# compare clients against the same emulator.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-bench-import.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
export IMPORT_BENCH_ROWS="${IMPORT_BENCH_ROWS:-100000}"
echo "==> local server on 127.0.0.1:$port; $IMPORT_BENCH_ROWS rows"

ours_out=target/bench-import-ours.txt
boto3_out=target/bench-import-boto3.txt
echo "==> cargo bench -p integration-tests --bench import --locked"
cargo bench -p integration-tests --bench import --locked | tee "$ours_out"
if [ "${IMPORT_BENCH_SKIP_BOTO3:-0}" = 1 ]; then exit 0; fi
echo "==> boto3 batch_writer"
"$VENV/bin/python" scripts/bench_boto3_import.py | tee "$boto3_out"

ours="$(sed -n 's/.*ours_rows_per_s=\([0-9.]*\).*/\1/p' "$ours_out" | head -n1)"
boto3="$(sed -n 's/.*boto3_rows_per_s=\([0-9.]*\).*/\1/p' "$boto3_out" | head -n1)"
[ -n "$ours" ] && [ -n "$boto3" ] || { echo "error: a rate is missing" >&2; exit 1; }
echo "==> result"
echo "ours_rows_per_s=$ours boto3_rows_per_s=$boto3 ratio_ours_over_boto3=$(awk -v a="$ours" -v b="$boto3" 'BEGIN { printf "%.2f", a / b }')"
