#!/usr/bin/env bash
# `make test`: every test the project has. Installs its tools on first use, starts its own
# local DynamoDB-compatible server on a free port, and stops it afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_chromium
# The Python tools and axe-core install (first use: ~50 s, mostly pip) beside fmt and the build.
mkdir -p target
(ensure_venv && ensure_axe) > target/tools-install.log 2>&1 &
TOOLS_PID=$!
trap 'kill "$TOOLS_PID" 2>/dev/null || true' EXIT

echo "==> cargo fmt --check"
cargo fmt --all -- --check

# Clippy lints each workspace crate as it compiles for the tests (clippy-driver as the compiler
# of the workspace's own crates, with `-D warnings`, exactly as `cargo clippy` runs it), instead
# of a `cargo clippy --all-targets` of its own, which checked every dependency once more (~95 s
# of a fresh clone). Every target clippy covered is built: libraries, binaries, tests, benches.
# Every cargo command below keeps these two, so none compiles a workspace crate again.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Every test command below selects the whole workspace: the same packages resolve the same
# features, so this one build serves them all (selecting fewer packages rebuilt ~60 s of
# crates with other features).
echo "==> cargo test: building every test target, linted by clippy ($SECONDS s)"
cargo test --workspace --locked --tests --benches --test segments --no-run

wait "$TOOLS_PID" || { cat target/tools-install.log; echo "error: installing the test tools failed" >&2; exit 1; }
cat target/tools-install.log
export PATH="$VENV/bin:$PATH"

echo "==> template lint ($SECONDS s)"
cfn-lint template.yaml
sam validate --lint --template-file template.yaml

echo "==> Python tests: the local DynamoDB server, make capacity's event loop (pytest scripts/localdynamo)"
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider scripts/localdynamo

# Two local servers, one per core: the segments tests (the slowest binary, ~3.5 min of 25,000-id
# calls) against their own, beside every other test against the first. Each test stacks its
# tables under its own prefix, so the split changes no test; it only halves the wall time.
port="$(free_port)"
start_moto "$port" target/moto-test.log
MAIN_MOTO_PID=$MOTO_PID
seg_port="$(free_port)"
start_moto "$seg_port" target/moto-test-segments.log
SEG_MOTO_PID=$MOTO_PID
SEG_PID=""
trap 'kill "$MAIN_MOTO_PID" "$SEG_MOTO_PID" ${SEG_PID:+"$SEG_PID"} 2>/dev/null || true' EXIT
# The cargo tests count requests per call: usage written on every call unless a test asks
# for the production setting itself (protections.rs).
export DEV_USAGE_FLUSH_SECONDS="${DEV_USAGE_FLUSH_SECONDS:-0}"
# Import callbacks to the tests' own receivers on 127.0.0.1 (never set on AWS).
export IMPORT_ALLOW_LOCAL_CALLBACKS=1

(local_aws_env "$seg_port" && exec cargo test --workspace --locked --test segments) \
  > target/test-segments.log 2>&1 &
SEG_PID=$!

local_aws_env "$port"
echo "==> cargo test (local DynamoDB-compatible servers on 127.0.0.1:$port, and :$seg_port for tests/segments.rs) ($SECONDS s)"
# Every integration test but the segments ones is a module of one binary, tests/tests/suite/:
# a test file beside them would be built and never run.
for f in tests/tests/*.rs; do
  [ "$(basename "$f")" = segments.rs ] || { echo "error: $f runs nowhere: make it a module of tests/tests/suite/" >&2; exit 1; }
done
# Every unit test, every crate's tests/ (the conformance suite, the fuzz regressions) and the
# suite; not tests/segments.rs (`test = false`: it runs above). `--tests` leaves out doc tests:
# no crate has one, and collecting none still costs rustdoc a pass over every crate (~80 s).
# Four test threads on two cores: many tests wait (paced calls, leases' seconds, the browser),
# so four overlap those waits: alone, the suite took 5m38s with two and 4m44s with four
# (2026-12-06). Beside the segments tests the two cores are the limit either way.
cargo test --workspace --locked --tests -- --test-threads="${TEST_THREADS:-4}"

# The admin binary the test build linked for admin/tests/cli.rs (a `cargo build` of the bins
# resolves other features and took 65 s of a fresh clone), while the segments tests still run.
echo "==> admin CLI smoke test ($SECONDS s)"
scripts/admin-smoke.sh

echo "==> cargo test --test segments (ran beside the others) ($SECONDS s)"
seg_rc=0
wait "$SEG_PID" || seg_rc=$?
SEG_PID=""
cat target/test-segments.log
[ "$seg_rc" = 0 ] || { echo "error: tests/segments.rs failed" >&2; exit "$seg_rc"; }
echo "==> all tests passed in $SECONDS s"
