#!/usr/bin/env bash
# `make fuzz`: runs the cargo-fuzz targets of fuzz/ one after another, FUZZ_SECONDS each
# (default 600), as one libFuzzer process each. `scripts/fuzz.sh segment jwt_verify` (or
# `make fuzz FUZZ_TARGETS="segment jwt_verify"`) runs only those. Installs cargo-fuzz into
# .tools/ on first use. Uses the nightly toolchain if rustup has one, else stable with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags). Exits non-zero if any target crashed, timed
# out or ran out of memory; the input is then in fuzz/artifacts/<target>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-600}"
ALL_TARGETS=(user_data segment token_request jwt_verify import_rows)
if [ "$#" -gt 0 ]; then
  targets=("$@")
elif [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
  if [[ ! " ${ALL_TARGETS[*]} " =~ " $t " ]]; then
    echo "error: unknown fuzz target '$t' (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
done

TOOLS="$ROOT/.tools"
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools (first use only)"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
  echo "==> toolchain: nightly"
else
  toolchain=(+stable)
  export RUSTC_BOOTSTRAP=1
  echo "==> toolchain: stable with RUSTC_BOOTSTRAP=1 (no nightly installed)"
fi

failed=()
for t in "${targets[@]}"; do
  corpus="$ROOT/fuzz/corpus/$t"
  artifacts="$ROOT/fuzz/artifacts/$t"
  log="$ROOT/fuzz/artifacts/$t.log"
  mkdir -p "$corpus" "$artifacts"
  echo "==> fuzz $t for ${FUZZ_SECONDS}s (corpus fuzz/corpus/$t, seeds fuzz/seeds/$t, log ${log#"$ROOT"/})"
  # The first corpus directory takes what the run finds; the seeds are only read.
  if (cd fuzz && cargo "${toolchain[@]}" fuzz run "$t" "$corpus" "$ROOT/fuzz/seeds/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 40 "$log" >&2
  fi
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  echo "    $t: $status; execs ${execs:-?}, exec/s ${speed:-?}; ${done_line:-no DONE line}"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed; see fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: no crash in ${targets[*]}"
