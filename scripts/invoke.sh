#!/usr/bin/env bash
# Usage: scripts/invoke.sh events/<name>.json
# Sends a sample event to the function that serves its route, through `cargo lambda invoke`
# against a running `make dev`, after filling in the demo account's credentials from
# .dev/demo.json (__BASIC_CREDENTIALS__, __SYSTEM_GUID__, __SEGMENT_GUID__ (the demo segment),
# the integration placeholders, __WORKSPACE_ID__ and __MOENGAGE_BASIC__ (the account id and
# MoEngage's Basic credentials: account id and client secret), __IMPORT_ID__ from $IMPORT_ID
# (the importId that `imports-create.json` answered), __RULE_SEGMENT_GUID__ from $RULE_SEGMENT_GUID
# (the segmentGuid that `rule-segments-create.json` answered), and __ACCESS_TOKEN__ with a fresh token).
# The import worker's SQS event goes to the import-worker function.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
event="${1:?usage: scripts/invoke.sh events/<name>.json}"
[ -f .dev/demo.json ] || { echo "run 'make dev' first" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
API_PORT="${DEV_API_PORT:-9000}"

# A demo.json written by an older `make dev` may lack a key: it prints as empty.
field() { python3 -c "import json,sys; print(json.load(open('.dev/demo.json')).get(sys.argv[1]) or '')" "$1"; }
basic="$(printf '%s:%s' "$(field clientId)" "$(field clientSecret)" | base64 -w0)"
moengage_basic="$(printf '%s:%s' "$(field accountId)" "$(field moengageApiKey)" | base64 -w0)"
token=""
if grep -q __ACCESS_TOKEN__ "$event"; then
  token="$(curl -s -X POST "$(field apiUrl)/accounts/connect/token" \
    -H "Authorization: Basic $basic" -d grant_type=client_credentials |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
fi
route="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('routeKey', ' -').split(' ',1)[1])" "$event")"
function="$(python3 - "$route" <<'PY'
import re, sys, tomllib
route = sys.argv[1]
if route == "-":  # not an API Gateway event: the SQS event of the import worker
    print("import-worker")
    sys.exit()
router = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["metadata"]["lambda"]["watch"]["router"]
for path, target in router.items():
    pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}")) + "$"
    if re.match(pattern, route):
        print(target if isinstance(target, str) else target[0]["function"])
        break
PY
)"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
sed -e "s|__BASIC_CREDENTIALS__|$basic|g" -e "s|__ACCESS_TOKEN__|$token|g" \
    -e "s|__SYSTEM_GUID__|$(field systemGuid)|g" -e "s|__SEGMENT_GUID__|$(field segmentGuid)|g" \
    -e "s|__INTEGRATION_TOKEN__|$(field integrationToken)|g" \
    -e "s|__NESTED_INTEGRATION_TOKEN__|$(field nestedIntegrationToken)|g" -e "s|__INTEGRATION_ID__|$(field integrationId)|g" \
    -e "s|__WORKSPACE_ID__|$(field accountId)|g" -e "s|__MOENGAGE_BASIC__|$moengage_basic|g" \
    -e "s|__IMPORT_ID__|${IMPORT_ID:-}|g" -e "s|__RULE_SEGMENT_GUID__|${RULE_SEGMENT_GUID:-}|g" \
    "$event" > "$tmp"
cargo lambda invoke "$function" --invoke-address 127.0.0.1 --invoke-port "$API_PORT" --data-file "$tmp"
