#!/usr/bin/env python3
"""Prepares a schemathesis run against a running `make dev` (used by scripts/schemathesis.sh).

Reads $DEV_DIR/demo.json, gets a bearer token holding every scope from the token endpoint
(the demo client, HTTP Basic), creates a few throwaway things for the delete operations to
consume (so that deleting never takes away the demo ids the other operations use), and writes
the schemathesis configuration: the credentials of each security scheme of docs/openapi.yaml
and dictionaries of valid ids for the path parameters (and the integration token for the
user-data bodies), drawn with a probability so that invalid values are still generated.

Usage: schemathesis_config.py DEV_DIR OUT_TOML MAX_EXAMPLES WORKERS
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

# How often a bound parameter takes one of the valid values (otherwise schemathesis generates).
PROBABILITY = 0.8
SPARE = 10  # throwaway segments, integrations and users for the delete operations


def call(api, method, path, *, token=None, basic=None, body=None, form=None, ok=(200, 201)):
    """The status and JSON body of a call; exits unless the status is in `ok`."""
    headers = {}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = form.encode()
    req = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    if status not in ok:
        raise SystemExit(f"error: {method} {path} answered {status}: {raw[:500]!r}")
    return status, json.loads(raw) if raw else None


def toml_str(value):
    return json.dumps(str(value))  # a JSON string of printable ASCII is a TOML basic string


def toml_list(values):
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def main():
    dev_dir, out, max_examples, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    demo = json.load(open(f"{dev_dir}/demo.json"))
    api = demo["apiUrl"]
    client = (demo["clientId"], demo["clientSecret"])

    _, grant = call(api, "POST", "/accounts/connect/token", basic=client, form="grant_type=client_credentials")
    token = grant["access_token"]
    system = demo["systemGuid"]

    # Users that exist (a read finds a user with segment memberships), and throwaway users
    # for the erase operation, all members of a segment of their own. Segments, unlike
    # attributes, hold up on a stack that earlier runs have fuzzed (integrations patched,
    # the attribute limit used up).
    users = ["schemathesis-user@walkme.example", "John@company.com", "Melissa@company.com"]
    erasable = [f"schemathesis-erase-{i}@walkme.example" for i in range(SPARE)]
    _, members = call(
        api,
        "POST",
        f"/public/v1/user/system/{system}/segment",
        token=token,
        body={"name": "schemathesis users", "userIds": [users[0], *erasable]},
    )

    # Throwaway segments and integrations for the delete operations. An integration takes an
    # attribute; once earlier runs have used up the account's limit (409), there are fewer.
    spare_segments = []
    for i in range(SPARE):
        _, seg = call(
            api,
            "POST",
            f"/public/v1/user/system/{system}/segment",
            token=token,
            body={"name": f"schemathesis spare {i}", "userIds": [erasable[i]]},
        )
        spare_segments.append(seg["segmentGuid"])
    spare_integrations = []
    for i in range(SPARE):
        status, integ = call(
            api,
            "POST",
            "/public/v1/integrations",
            token=token,
            body={
                "name": f"schemathesis spare {i}",
                "userIdentifierProperty": "Email",
                "properties": [{"path": "Plan", "name": f"Schemathesis_Spare_{i}", "type": "String"}],
            },
            ok=(201, 409),
        )
        if status == 409:
            break
        spare_integrations.append(integ["integrationId"])
    # Never the demo integration: an id no integration has, if need be.
    spare_integrations = spare_integrations or ["00000000-0000-4000-8000-000000000000"]

    # Rule segments on membership of the segment above: some for the get and replace
    # operations, throwaway ones for the delete operation. Not on one of the demo
    # integration's properties: an earlier run's PATCH may have removed them.
    def rule_segment(name):
        rule = {"all": [{"segment": members["segmentGuid"], "op": "in"}]}
        _, made = call(api, "POST", f"/public/v1/user/system/{system}/rule-segment", token=token,
                       body={"name": name, "rule": rule})
        return made["segmentGuid"]

    rule_segments = [rule_segment("schemathesis rule")]
    spare_rule_segments = [rule_segment(f"schemathesis spare rule {i}") for i in range(SPARE)]

    # An import of the demo integration, for the status route (imports are never deleted).
    _, created = call(api, "POST", f"/public/v1/integrations/{demo['integrationId']}/imports",
                      token=token, body={"format": "csv"})
    imports = [created["importId"]]

    def bind(dictionary):
        return f"{{ dictionary = {toml_str(dictionary)}, probability = {PROBABILITY} }}"

    dictionaries = {
        "systems": [system],
        "segments": [demo["segmentGuid"]],
        "integrations": [demo["integrationId"]],
        "users": users,
        "workspaces": [demo["accountId"]],
        "integrationTokens": [demo["integrationToken"]],
        "spareSegments": spare_segments,
        "spareIntegrations": spare_integrations,
        "erasableUsers": erasable,
        "imports": imports,
        "ruleSegments": rule_segments,
        "spareRuleSegments": spare_rule_segments,
    }
    lines = [
        "# Written by scripts/schemathesis.sh for the stack described in demo.json; do not edit.",
        f"workers = {workers if workers == 'auto' else int(workers)}",
        # A function instance of `make dev` (a debug build) may take seconds to start.
        "request-timeout = 60",
        f"hooks = {toml_str(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schemathesis_hooks.py'))}",
        "",
        "[cache]",
        f"directory = {toml_str(os.path.join(os.path.dirname(os.path.abspath(out)), 'cache'))}",
        "",
        "[generation]",
        f"max-examples = {max_examples}",
        # The local stack's HTTP front (cargo lambda's emulator) answers 500 (text/plain) for a
        # header value holding a byte past ASCII, before any function runs (see
        # schemathesis_hooks.py). Headers keep every other invalid character.
        "exclude-header-characters = " + toml_str("".join(chr(c) for c in range(0x80, 0x100)) + "\r\n"),
        "",
        # Every check schemathesis has. The exceptions are per operation, below.
        "[checks]",
        "enabled = true",
        "",
        # A schema-violating body past an operation's size limit is refused with 413 before it
        # is parsed: a rejection like 400, though not in schemathesis's default list.
        "[checks.negative_data_rejection]",
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]',
        "",
        "[auth.openapi.bearerAuth]",
        f"bearer = {toml_str(token)}",
        "",
        "[auth.openapi.basicAuth]",
        f"username = {toml_str(client[0])}",
        f"password = {toml_str(client[1])}",
        "",
        "[auth.openapi.moengageBasic]",
        f"username = {toml_str(demo['accountId'])}",
        f"password = {toml_str(demo['moengageApiKey'])}",
        "",
    ]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml_list(values)}", ""]
    lines += [
        "[parameters]",
        f'"path.systemGuid" = {bind("systems")}',
        f'"path.segmentGuid" = {bind("segments")}',
        f'"path.integrationId" = {bind("integrations")}',
        f'"path.userId" = {bind("users")}',
        f'"path.workspace_id" = {bind("workspaces")}',
        f'"body.token" = {bind("integrationTokens")}',
        f'"path.importId" = {bind("imports")}',
        "",
        "[[operations]]",
        'include-operation-id = "deleteSegment"',
        f'parameters = {{ "path.segmentGuid" = {bind("spareSegments")} }}',
        "",
        "[[operations]]",
        'include-operation-id = "getRuleSegment"',
        f'parameters = {{ "path.segmentGuid" = {bind("ruleSegments")} }}',
        "",
        "[[operations]]",
        'include-operation-id = "replaceRuleSegment"',
        f'parameters = {{ "path.segmentGuid" = {bind("ruleSegments")} }}',
        "",
        "[[operations]]",
        'include-operation-id = "deleteRuleSegment"',
        f'parameters = {{ "path.segmentGuid" = {bind("spareRuleSegments")} }}',
        "",
        "[[operations]]",
        'include-operation-id = "deleteIntegration"',
        f'parameters = {{ "path.integrationId" = {bind("spareIntegrations")} }}',
        "",
        "[[operations]]",
        'include-operation-id = "deleteEndUser"',
        f'parameters = {{ "path.userId" = {bind("erasableUsers")} }}',
        "",
        # positive_data_acceptance ("a request the schema allows gets a 2xx") cannot hold for a
        # write: a schema-valid Idempotency-Key already used with another request is rightly
        # `422 idempotency_key_reused`, and the rules that span several fields (the user
        # identifier path may not be a property, unique paths and names, credentials not both
        # in the header and the body, a dry-run token ...) are `400` by design; nor for a cursor
        # this API did not issue (`400`). See docs/DECISIONS.md.
        "[[operations]]",
        'include-method = ["POST", "PUT", "PATCH", "DELETE"]',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        "[[operations]]",
        'include-operation-id = "listSegmentMembers"',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        # The segment list pages with a cursor too (docs/DECISIONS.md "Segments at the DynamoDB floor"), and so does the import list.
        "[[operations]]",
        'include-operation-id = "listSegments"',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        "[[operations]]",
        'include-operation-id = "listImports"',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        # The rule-segment list pages with a cursor too; the usage route's `to` must be on or
        # after `from`, at most 91 days later (a rule across two fields: `400` by design).
        "[[operations]]",
        'include-operation-id = "listRuleSegments"',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        "[[operations]]",
        'include-operation-id = "getUsage"',
        "checks = { positive_data_acceptance = { enabled = false } }",
        "",
        # A create sent again with the same Idempotency-Key and body replays its first 201, as
        # documented, naming the resource it created then, which a later step of the stateful
        # phase may have deleted: its GET is then rightly 404 (docs/DECISIONS.md).
        "[[operations]]",
        'include-operation-id = "createIntegration"',
        "checks = { ensure_resource_availability = { enabled = false } }",
        "",
        "[[operations]]",
        'include-operation-id = "createSegment"',
        "checks = { ensure_resource_availability = { enabled = false } }",
        "",
    ]
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
