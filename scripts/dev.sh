#!/usr/bin/env bash
# `make dev`: the whole product on this machine, in the foreground until Ctrl-C.
# Local DynamoDB-compatible server (moto) on 127.0.0.1:$DEV_DYNAMODB_PORT (8000), tables,
# a demo account, every function built and served by `cargo lambda watch` on its production
# path at http://127.0.0.1:$DEV_API_PORT (9000). Writes $DEV_DIR (.dev)/env and demo.json.
# Prints a "ready" banner, then one line per request (scripts/dev_proxy.py); the build's output
# goes to $DEV_DIR/build.log, the functions' logs to $DEV_DIR/functions.log, moto's to moto.log.
# The functions reload when a source changes, not when a git-ignored file does (DEV_DIR, tool
# reports: keep them git-ignored); DEV_NO_RELOAD=1 never reloads.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

DB_PORT="${DEV_DYNAMODB_PORT:-8000}"
API_PORT="${DEV_API_PORT:-9000}"
API_URL="http://127.0.0.1:$API_PORT"
# Where env, demo.json and moto.log go: a second stack (another DEV_DIR and ports) can run
# beside the first, e.g. `make load` on one while schemathesis runs against the other.
DEV_DIR="${DEV_DIR:-.dev}"

ensure_venv
export PATH="$VENV/bin:$PATH"
mkdir -p "$DEV_DIR"
# cargo lambda watch restarts every function (dropping requests in flight) on any change to a
# file git does not ignore: a DEV_DIR inside the tree must be ignored (.gitignore has /.dev*/).
if ! git check-ignore -q "$DEV_DIR" 2>/dev/null && [[ "$(cd "$DEV_DIR" && pwd)" == "$ROOT"/* ]]; then
  echo "warning: $DEV_DIR is not git-ignored: every log line written there reloads the functions." >&2
  echo "         Use a DEV_DIR named .dev* or under target/ (or DEV_NO_RELOAD=1)." >&2
fi

if curl -s -o /dev/null "http://127.0.0.1:$API_PORT/"; then
  echo "error: something already listens on 127.0.0.1:$API_PORT (another make dev?)" >&2
  exit 1
fi
start_moto "$DB_PORT" "$DEV_DIR/moto.log"
WATCH_PID=""
PROXY_PID=""
QUEUE_PID=""
cleanup() {
  [ -n "$QUEUE_PID" ] && kill "$QUEUE_PID" 2>/dev/null
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
  kill "$MOTO_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
local_aws_env "$DB_PORT"

cat > "$DEV_DIR/env" <<ENV
AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DB_PORT
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$DB_PORT
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_EC2_METADATA_DISABLED=true
DYNAMODB_ATTEMPT_TIMEOUT_MS=30000
DYNAMODB_OPERATION_TIMEOUT_MS=120000
USAGE_FLUSH_SECONDS=${DEV_USAGE_FLUSH_SECONDS:-5}
CONFIG_TABLE=ingest-config
KEYS_TABLE=ingest-signing-keys
END_USERS_TABLE=ingest-end-users
SEGMENTS_TABLE=ingest-segments
TOKEN_ISSUER=$API_URL
TOKEN_AUDIENCE=end-user-data-api
IMPORT_BUCKET=ingest-imports
IMPORT_QUEUE=ingest-imports
IMPORT_ALLOW_LOCAL_CALLBACKS=1
ENV
set -a
# shellcheck disable=SC1091
source "$DEV_DIR/env"
set +a

echo "==> building every function and the admin tool (output: $DEV_DIR/build.log)"
if ! cargo build --workspace --bins >"$DEV_DIR/build.log" 2>&1; then
  tail -n 40 "$DEV_DIR/build.log" >&2
  echo "error: the build failed; see $DEV_DIR/build.log" >&2
  exit 1
fi

admin() { "${CARGO_TARGET_DIR:-target}/debug/admin" --json "$@"; }
json_field() { "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

echo "==> creating tables and the demo account"
admin tables create >/dev/null
admin account create demo >/dev/null
SYSTEM_GUID="$(admin system create --account demo | json_field systemGuid)"
CLIENT_JSON="$(admin client create --account demo --scopes all --name demo)"
# MoEngage's API key: a client scoped to exactly what its route needs (docs/SECURITY.md).
MOENGAGE_API_KEY="$(admin client create --account demo --scopes endUserUpdate:write --name moengage | json_field clientSecret)"
admin keys rotate >/dev/null
# Bulk imports: the bucket, its upload notifications and their queue, as template.yaml has them.
"$VENV/bin/python" scripts/import_queue.py setup >/dev/null
CLIENT_ID="$(echo "$CLIENT_JSON" | json_field clientId)"
CLIENT_SECRET="$(echo "$CLIENT_JSON" | json_field clientSecret)"

echo "==> starting the functions (cargo lambda watch; logs: $DEV_DIR/functions.log)"
# cargo lambda watch runs one instance per function unless told otherwise: concurrent
# callers (make load, schemathesis) would queue behind each other. DEV_NO_RELOAD=1 keeps the
# running functions when sources change (a reload drops the requests in flight).
WATCH_FLAGS=(--concurrency "${DEV_CONCURRENCY:-4}")
[ "${DEV_NO_RELOAD:-0}" = 1 ] && WATCH_FLAGS+=(--ignore-changes)
# Behind scripts/dev_proxy.py, which prints one line per request.
WATCH_PORT="$(free_port)"
cargo lambda watch -A 127.0.0.1 -P "$WATCH_PORT" "${WATCH_FLAGS[@]}" >"$DEV_DIR/functions.log" 2>&1 &
WATCH_PID=$!
# Both write to requests.log, each appending (neither overwrites the other's lines).
: > "$DEV_DIR/requests.log"
"$VENV/bin/python" -u scripts/dev_proxy.py "$API_PORT" "$WATCH_PORT" >> "$DEV_DIR/requests.log" 2>&1 &
PROXY_PID=$!
# What the SQS event source does on AWS: each upload's event to the import worker.
"$VENV/bin/python" -u scripts/import_queue.py poll "$WATCH_PORT" >> "$DEV_DIR/requests.log" 2>&1 &
QUEUE_PID=$!
ready=0
for _ in $(seq 1 900); do
  # -f: the proxy answers 502 until cargo lambda watch is up (it starts a function on its
  # first request, which takes a while on a busy machine).
  if curl -sf -o /dev/null "$API_URL/.well-known/jwks.json"; then ready=1; break; fi
  kill -0 "$WATCH_PID" 2>/dev/null || { tail -n 20 "$DEV_DIR/functions.log" >&2; echo "error: cargo lambda watch exited; see $DEV_DIR/functions.log" >&2; exit 1; }
  sleep 0.2
done
[ "$ready" = 1 ] || { echo "error: the functions did not answer within 3 minutes; see $DEV_DIR/functions.log" >&2; exit 1; }

echo "==> seeding the demo integrations and segment (the seeds' examples) through the API"
ACCESS_TOKEN="$(curl -s -X POST "$API_URL/accounts/connect/token" \
  -H "Authorization: Basic $(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)" \
  -d grant_type=client_credentials | json_field access_token)"
INTEGRATION_JSON="$(curl -s -X POST "$API_URL/public/v1/integrations" \
  -H "Authorization: Bearer $ACCESS_TOKEN" -H 'Content-Type: application/json' \
  --data-raw '{"name": "Update Customer Attributes", "userIdentifierProperty": "Email",
    "properties": [{"path": "Type", "name": "Customer_Type", "type": "String"},
                   {"path": "Status", "name": "Customer_Status", "type": "String"}]}')"
INTEGRATION_TOKEN="$(echo "$INTEGRATION_JSON" | json_field token)"
INTEGRATION_ID="$(echo "$INTEGRATION_JSON" | json_field integrationId)"
# For the seeds' other example body ("properties.ID", "nested.field"): events/user-data-seed-nested.json
NESTED_TOKEN="$(curl -s -X POST "$API_URL/public/v1/integrations" \
  -H "Authorization: Bearer $ACCESS_TOKEN" -H 'Content-Type: application/json' \
  --data-raw '{"name": "Seed nested example", "userIdentifierProperty": "properties.ID",
    "properties": [{"path": "field1", "type": "String"}, {"path": "field2", "type": "Number"},
                   {"path": "nested.field", "type": "Number"}]}' | json_field token)"
# The demo segment (the Segments API seeds' create body); events/segments-*.json use its guid.
# Its external id differs from events/segments-create.json's, so that event can create its own.
SEGMENT_GUID="$(curl -s -X POST "$API_URL/public/v1/user/system/$SYSTEM_GUID/segment" \
  -H "Authorization: Bearer $ACCESS_TOKEN" -H 'Content-Type: application/json' \
  --data-raw '{"id": "demo-segment", "name": "Demo segment",
    "userIds": ["John@company.com", "Melissa@company.com"]}' | json_field segmentGuid)"

# `cargo lambda watch` starts a function's instances one at a time as concurrent requests
# arrive, and answers 500 to a request that meets an instance still starting. Start every
# instance of every function now, so the first burst of traffic (a load run, schema fuzzing)
# meets warm ones.
warm() {
  local i pids=()
  for i in $(seq 1 "${DEV_CONCURRENCY:-4}"); do
    curl -s -o /dev/null -H "Authorization: Bearer $ACCESS_TOKEN" "$API_URL$1" &
    pids+=("$!")
  done
  wait "${pids[@]}"
}
for _ in 1 2 3; do
  warm /.well-known/jwks.json
  warm /public/v1/integrations
  warm /public/v1/user/John@company.com
  warm "/public/v1/user/system/$SYSTEM_GUID/segment/$SEGMENT_GUID"
  warm /console
done

cat > "$DEV_DIR/demo.json" <<JSON
{
  "apiUrl": "$API_URL",
  "accountId": "demo",
  "systemGuid": "$SYSTEM_GUID",
  "segmentGuid": "$SEGMENT_GUID",
  "clientId": "$CLIENT_ID",
  "clientSecret": "$CLIENT_SECRET",
  "moengageApiKey": "$MOENGAGE_API_KEY",
  "integrationToken": "$INTEGRATION_TOKEN",
  "integrationId": "$INTEGRATION_ID",
  "nestedIntegrationToken": "$NESTED_TOKEN"
}
JSON

cat <<MSG

Local stack ready (Ctrl-C stops everything).
  API:            $API_URL
  Console:        $API_URL/console
                  sign in with client id $CLIENT_ID
                           and secret    $CLIENT_SECRET
  DynamoDB:       http://127.0.0.1:$DB_PORT   (moto + meter: GET /_meter, docs/LOCAL_DYNAMODB.md)
  S3 and SQS:     the same server (bucket ingest-imports; uploads reach the import worker)
  logs:           $DEV_DIR/functions.log  $DEV_DIR/moto.log  $DEV_DIR/build.log
  demo account:   $DEV_DIR/demo.json      environment: $DEV_DIR/env

Get a token:
  curl --location --request POST '$API_URL/accounts/connect/token' \\
    --header 'Content-Type: application/x-www-form-urlencoded' \\
    --header "Authorization: Basic \$(printf '%s:%s' '$CLIENT_ID' '$CLIENT_SECRET' | base64 -w0)" \\
    --data-urlencode 'grant_type=client_credentials'

Requests (method, path, status, milliseconds):
MSG
tail -n 0 -f "$DEV_DIR/requests.log" &
TAIL_PID=$!
trap 'kill "$TAIL_PID" 2>/dev/null; cleanup' EXIT
wait "$WATCH_PID"
