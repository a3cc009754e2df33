#!/usr/bin/env bash
# `make hostile-imports`: each hostile import file of tests/tests/suite/hostile_imports.rs at
# HOSTILE_MB (default 100) megabytes, each test in a process of its own (so each peak RSS is
# that file's), against a throwaway local server. Prints one HOSTILE line per file: outcome,
# requests, write units and the worker's peak memory over the process's before the import.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv
mkdir -p target
port="$(free_port)"
start_moto "$port" target/moto-hostile.log
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
local_aws_env "$port"
export USAGE_FLUSH_SECONDS=0 HOSTILE_MB="${HOSTILE_MB:-100}"
cargo test --locked -p integration-tests --test suite --no-run
tests=$(cargo test --locked -q -p integration-tests --test suite -- --list hostile_imports:: 2>/dev/null | sed -n 's/: test$//p')
for t in $tests; do
  cargo test --locked -q -p integration-tests --test suite -- --exact "$t" --nocapture 2>&1 | grep '^HOSTILE'
done
