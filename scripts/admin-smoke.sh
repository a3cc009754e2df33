#!/usr/bin/env bash
# Smoke test of the admin CLI against the local server of `make test`: every command with
# --json prints one JSON object with the fields docs/WALKTHROUGH.md promises ("The operator's
# side: admin CLI"). Uses its own tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONFIG_TABLE=smoke-config KEYS_TABLE=smoke-keys END_USERS_TABLE=smoke-end-users SEGMENTS_TABLE=smoke-segments
admin() { "${CARGO_TARGET_DIR:-target}/debug/admin" --json "$@"; }
check() { # check JSON FIELD...: the output is one JSON object holding every field
  python3 -c 'import json,sys; o=json.loads(sys.argv[1]); missing=[f for f in sys.argv[2:] if f not in o]; sys.exit(f"missing {missing} in {o}" if missing else 0)' "$@"
}
check "$(admin tables create)" tables created
check "$(admin account create smoke --attribute-limit 30 --rate-limit 5)" accountId attributeLimit rateLimit
check "$(admin system create --account smoke)" systemGuid
out="$(admin client create --account smoke --scopes 'segments:read segments:write' --name crm)"
check "$out" clientId clientSecret scopes
id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["clientId"])' "$out")"
check "$(admin client list --account smoke)" clients
check "$(admin client rotate-secret "$id")" clientId clientSecret
check "$(admin client disable "$id")" clientId disabled
out="$(admin keys rotate)"
check "$out" kid
kid="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kid"])' "$out")"
# Revoking the current key makes a new one current first.
out="$(admin keys revoke "$kid")"
check "$out" revoked current
python3 -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if o["current"] and o["current"] != o["revoked"] else f"no new current key: {o}")' "$out"
check "$(admin usage --account smoke --from 2026-11-01 --to 2026-11-23)" accountId from to usage total
# Errors are JSON too, with a non-zero exit.
if out="$(admin account create smoke)"; then echo "duplicate account accepted" >&2; exit 1; fi
check "$out" error
check "$(admin account create widest --attribute-limit 1000)" accountId
if out="$(admin account create wider --attribute-limit 1001)"; then echo "attribute limit past 1,000 accepted" >&2; exit 1; fi
check "$out" error
if out="$(admin client create --account nobody --scopes all)"; then echo "client of unknown account accepted" >&2; exit 1; fi
check "$out" error
if out="$(admin usage --account smoke --from 2026-11-23 --to 2026-11-01)"; then echo "reversed days accepted" >&2; exit 1; fi
check "$out" error
if out="$(admin keys revoke "$kid")"; then echo "a revoked key revoked again" >&2; exit 1; fi
check "$out" error
echo "admin CLI smoke test: 16 passed, 0 failed"
