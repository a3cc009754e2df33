#!/usr/bin/env bash
# Developer shortcut: the cargo tests only (no fmt/clippy/lint), against a throwaway local
# server. Arguments go to `cargo test`. `make test` remains the full suite.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-quick.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
# The cargo tests count requests per call: usage written on every call unless a test asks
# for the production setting itself (protections.rs).
export USAGE_FLUSH_SECONDS="${DEV_USAGE_FLUSH_SECONDS:-0}"
# Import callbacks to the tests' own receivers on 127.0.0.1 (never set on AWS).
export IMPORT_ALLOW_LOCAL_CALLBACKS=1
cargo test --workspace "$@"
