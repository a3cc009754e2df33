#!/usr/bin/env bash
# `make schemathesis`: schema fuzzing of a running `make dev` (its apiUrl in
# $DEV_DIR/demo.json, DEV_DIR defaulting to .dev) against docs/openapi.yaml, with every
# schemathesis check on: no 5xx, status codes, content types, headers and bodies as
# documented, invalid data rejected, unexpected methods answered 405 with `Allow`, auth not
# ignored (one exception, in docs/DECISIONS.md; the setup, credentials and ids are in
# scripts/schemathesis_config.py). Exits nonzero on any failure. Reports (JUnit XML, JSON) go
# to $DEV_DIR/schemathesis/.
#
# Knobs (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  most test cases per operation (default 100)
#   SCHEMATHESIS_WORKERS       concurrent workers (default 2)
#   SCHEMATHESIS_SEED          a seed, to replay a run (default: random, printed by schemathesis)
# Further arguments go to `st run` (e.g. --include-operation-id updateUserData, --phases fuzzing).
#
# schemathesis (pinned in requirements-schemathesis.txt) is installed on first use into the
# git-ignored .venv-schemathesis/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DEV_DIR="${DEV_DIR:-.dev}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
WORKERS="${SCHEMATHESIS_WORKERS:-2}"
ST_VENV="$ROOT/.venv-schemathesis"

stamp="$ST_VENV/.requirements.sha256"
want="$(sha256sum requirements-schemathesis.txt | cut -d' ' -f1)"
if ! [ -x "$ST_VENV/bin/st" ] || ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing schemathesis into .venv-schemathesis (first use only)"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-schemathesis.txt
  echo "$want" > "$stamp"
fi

if [ ! -f "$DEV_DIR/demo.json" ]; then
  echo "error: no $DEV_DIR/demo.json: start \`make dev\` first (in another terminal), then run \`make schemathesis\`" >&2
  exit 2
fi
api="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["apiUrl"])' "$DEV_DIR/demo.json")"
if ! curl -s -o /dev/null "$api/.well-known/jwks.json"; then
  echo "error: nothing answers at $api ($DEV_DIR/demo.json): start \`make dev\` first (in another terminal)" >&2
  exit 2
fi

out="$DEV_DIR/schemathesis"
mkdir -p "$out"
echo "==> token, throwaway ids for the delete operations, config ($out/schemathesis.toml)"
python3 scripts/schemathesis_config.py "$DEV_DIR" "$out/schemathesis.toml" "$MAX_EXAMPLES" "$WORKERS"

seed=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && seed=(--seed "$SCHEMATHESIS_SEED")
echo "==> schemathesis against $api (max $MAX_EXAMPLES examples per operation, $WORKERS workers)"
start=$SECONDS
status=0
"$ST_VENV/bin/st" --config-file "$out/schemathesis.toml" run docs/openapi.yaml \
  --url "$api" \
  --report junit,json \
  --report-dir "$out" \
  --generation-database none \
  --no-color \
  "${seed[@]}" "$@" || status=$?
echo "==> schemathesis finished in $((SECONDS - start)) s (exit $status); reports in $out/"
exit "$status"
