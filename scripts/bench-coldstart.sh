#!/usr/bin/env bash
# `make bench-coldstart`: each function's release binary started against a local emulation
# of the Lambda Runtime API, exec -> first response (median and p90 of 20 starts) and peak RSS,
# next to the floor of the Python alternative (`import boto3; boto3.client('dynamodb')`),
# measured in the same run. Targets: ours <= 1/15 of the floor's wall time and <= 1/2 of its
# peak memory. What each first request exercises: scripts/bench_coldstart.py.
# Host (x86_64) release binaries, not the deployed arm64 ones; a busy machine inflates both
# sides (the runs are interleaved, so the ratios suffer less than the absolute figures).
# Extra arguments go to the Python bench (e.g. --runs 50, --check).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-coldstart.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
echo "==> local DynamoDB-compatible server on 127.0.0.1:$port"

echo "==> creating the tables (debug admin)"
cargo run -q --locked -p admin -- tables create

echo "==> cargo build --release --locked -p token -p user-data -p segments -p integrations"
cargo build --release --locked -p token -p user-data -p segments -p integrations

"$VENV/bin/python" scripts/bench_coldstart.py --bin-dir target/release "$@"
