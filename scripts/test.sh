#!/usr/bin/env bash
# `make test`: every test the project has. Installs its tools on first use, starts its own
# local DynamoDB-compatible server on a free port, and stops it afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_venv
export PATH="$VENV/bin:$PATH"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> template lint"
cfn-lint template.yaml
sam validate --lint --template-file template.yaml

echo "==> local DynamoDB server unit tests (pytest scripts/localdynamo)"
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider scripts/localdynamo

mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-test.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
# The cargo tests count requests per call: usage written on every call unless a test asks
# for the production setting itself (protections.rs).
export USAGE_FLUSH_SECONDS="${DEV_USAGE_FLUSH_SECONDS:-0}"
# Import callbacks to the tests' own receivers on 127.0.0.1 (never set on AWS).
export IMPORT_ALLOW_LOCAL_CALLBACKS=1
echo "==> cargo test (local DynamoDB-compatible server on 127.0.0.1:$port)"
cargo test --workspace --locked

echo "==> admin CLI smoke test"
cargo build --locked -p admin
scripts/admin-smoke.sh
