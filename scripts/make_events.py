#!/usr/bin/env python3
"""Writes events/*.json: one API Gateway HTTP API (payload 2.0) event per route.

Placeholders are filled by scripts/invoke.sh (from .dev/demo.json) and by tests/tests/suite/events.rs:
__BASIC_CREDENTIALS__, __ACCESS_TOKEN__, __INTEGRATION_TOKEN__, __NESTED_INTEGRATION_TOKEN__,
__INTEGRATION_ID__, __IMPORT_ID__ (an import of the demo integration: invoke.sh takes it from
$IMPORT_ID; tests/tests/suite/events.rs creates one with imports-create.json first), __SYSTEM_GUID__, __SEGMENT_GUID__ (the demo segment; tests/tests/suite/events.rs creates
one with segments-create.json first), __RULE_SEGMENT_GUID__ (likewise, from rule-segments-create.json), __WORKSPACE_ID__ (the account id) and __MOENGAGE_BASIC__
(base64 of "<account id>:<client secret>", MoEngage's Basic credentials). Run it again after
changing it; the files are committed.
"""
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events")
BEARER = {"authorization": "Bearer __ACCESS_TOKEN__", "content-type": "application/json"}


def ev(method, route, path=None, headers=None, body=None, query=""):
    path = path or route
    headers = dict(headers or {})
    headers.setdefault("host", "127.0.0.1:9000")
    event = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1:9000",
            "domainPrefix": "127",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.195", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "23/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1795424400000,
        },
        "body": body if body is None or isinstance(body, str) else json.dumps(body, indent=1),
        "isBase64Encoded": False,
    }
    if query:
        # As API Gateway sends it: the raw string and, only when there is one, the parsed map.
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    return event


SEED_INTEGRATION = {
    "name": "Update Customer Attributes",
    "userIdentifierProperty": "Email",
    "properties": [
        {"path": "Type", "name": "Customer_Type", "type": "String"},
        {"path": "Status", "name": "Customer_Status", "type": "String"},
    ],
}

SEGMENTS = "/public/v1/user/system/{systemGuid}/segment"
SEGMENTS_PATH = "/public/v1/user/system/__SYSTEM_GUID__/segment"
SEGMENT = SEGMENTS + "/{segmentGuid}"
SEGMENT_PATH = SEGMENTS_PATH + "/__SEGMENT_GUID__"
SYSTEM = "/public/v1/user/system/{systemGuid}"
SYSTEM_PATH = "/public/v1/user/system/__SYSTEM_GUID__"
RULES = SYSTEM + "/rule-segment"
RULES_PATH = SYSTEM_PATH + "/rule-segment"
RULE = RULES + "/{segmentGuid}"
RULE_PATH = RULES_PATH + "/__RULE_SEGMENT_GUID__"
# The seeds' "CSV type = paying OR API type = paying", written once: no integration named.
EXTERNAL_RULE = {"any": [{"attribute": {"property": "Customer_Type"}, "op": "equals", "value": "External"},
                         {"attribute": {"property": "Customer_Status"}, "op": "in",
                          "values": ["veteran", "retired"], "ignoreCase": True}]}
READ = {"authorization": "Bearer __ACCESS_TOKEN__"}
IMPORTS = "/public/v1/integrations/{integrationId}/imports"
IMPORTS_PATH = "/public/v1/integrations/__INTEGRATION_ID__/imports"

EVENTS = {
    "token.json": ev("POST", "/accounts/connect/token",
                     headers={"content-type": "application/x-www-form-urlencoded",
                              "authorization": "Basic __BASIC_CREDENTIALS__"},
                     body="grant_type=client_credentials"),
    "jwks.json": ev("GET", "/.well-known/jwks.json"),
    "openid-configuration.json": ev("GET", "/.well-known/openid-configuration"),
    # The seeds' three example bodies (the three-user one with distinct addresses: the
    # published page shows one obfuscated address three times, which is a duplicate).
    "user-data-seed-single.json": ev("POST", "/public/v1/user/data", headers=BEARER, body={
        "token": "__INTEGRATION_TOKEN__",
        "data": [{"Email": "[email protected]", "Status": "New", "Type": "Internal"}]}),
    "user-data-seed-multiple.json": ev("POST", "/public/v1/user/data", headers=BEARER, body={
        "token": "__INTEGRATION_TOKEN__",
        "data": [{"Email": "john.doe@walkme.example", "Status": "New", "Type": "Internal"},
                 {"Email": "jane.doe@walkme.example", "Status": "Retired", "Type": "Internal"},
                 {"Email": "joe.doe@walkme.example", "Status": "Veteran", "Type": "External"}]}),
    "user-data-seed-nested.json": ev("POST", "/public/v1/user/data", headers=BEARER, body={
        "token": "__NESTED_INTEGRATION_TOKEN__",
        "data": [{"properties.ID": "[email protected]", "field1": "value", "field2": 123,
                  "nested": {"field": 456}}]}),
    # MoEngage Track User API: the seed's example attributes, Basic workspace id + API key.
    "moengage-track-user.json": ev("POST", "/v1/customer/{workspace_id}", "/v1/customer/__WORKSPACE_ID__",
                                   headers={"authorization": "Basic __MOENGAGE_BASIC__",
                                            "content-type": "application/json",
                                            "x-forwarded-for": "203.0.113.195"}, body={
        "type": "customer",
        "customer_id": "john.doe@walkme.example",
        "attributes": {"name": "John", "points": 20, "expiry_date": "2020-05-31T03:47:35Z",
                       "super_user": True, "user_persona": "browsers"}}),
    "user-get.json": ev("GET", "/public/v1/user/{userId}", "/public/v1/user/john.doe%40walkme.example",
                        headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    "user-delete.json": ev("DELETE", "/public/v1/user/{userId}", "/public/v1/user/joe.doe%40walkme.example",
                           headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    # Batch erase (suppresses the ids for the account's window) and lifting one suppression.
    "user-erase.json": ev("POST", "/public/v1/user/erase", headers=BEARER, body={
        "userIds": ["jane.doe@walkme.example", "former.customer@walkme.example"]}),
    "user-suppression-delete.json": ev("DELETE", "/public/v1/user/suppression/{userId}",
                                       "/public/v1/user/suppression/former.customer%40walkme.example",
                                       headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    "integrations-create.json": ev("POST", "/public/v1/integrations", headers=BEARER, body=SEED_INTEGRATION),
    "integrations-list.json": ev("GET", "/public/v1/integrations",
                                 headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    "integrations-get.json": ev("GET", "/public/v1/integrations/{integrationId}",
                                "/public/v1/integrations/__INTEGRATION_ID__",
                                headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    "integrations-patch.json": ev("PATCH", "/public/v1/integrations/{integrationId}",
                                  "/public/v1/integrations/__INTEGRATION_ID__", headers=BEARER, body={
                                      "name": "Update Customer Attributes",
                                      "properties": SEED_INTEGRATION["properties"] + [
                                          {"path": "Plan", "name": "Customer_Plan", "type": "String"}]}),
    "integrations-test.json": ev("POST", "/public/v1/integrations/{integrationId}/test",
                                 "/public/v1/integrations/__INTEGRATION_ID__/test", headers=BEARER, body={
                                     "token": "__INTEGRATION_TOKEN__",
                                     "data": [{"Email": "[email protected]", "Status": "New", "Type": "Internal",
                                               "Extra": 1}]}),
    "integrations-delete.json": ev("DELETE", "/public/v1/integrations/{integrationId}",
                                   "/public/v1/integrations/__INTEGRATION_ID__",
                                   headers={"authorization": "Bearer __ACCESS_TOKEN__"}),
    # Bulk imports: create one (answers the upload URL), read it, list them. The worker's event
    # is what SQS delivers for an upload (S3's notification as the message body).
    "imports-create.json": ev("POST", IMPORTS, IMPORTS_PATH, headers=BEARER, body={
        "format": "csv", "mode": "replace"}),
    "imports-get.json": ev("GET", IMPORTS + "/{importId}", IMPORTS_PATH + "/__IMPORT_ID__", headers=READ),
    "imports-list.json": ev("GET", IMPORTS, IMPORTS_PATH, headers=READ, query="limit=20"),
    "import-worker-upload.json": {"Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": json.dumps({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-23T09:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:AROAEXAMPLE:uploader"},
            "requestParameters": {"sourceIPAddress": "203.0.113.7"},
            "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                                 "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads",
                   "bucket": {"name": "ingest-imports", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                              "arn": "arn:aws:s3:::ingest-imports"},
                   "object": {"key": "uploads/__WORKSPACE_ID__/__INTEGRATION_ID__/__IMPORT_ID__",
                              "size": 64, "eTag": "0123456789abcdef0123456789abcdef",
                              "sequencer": "0A1B2C3D4E5F678901"}}}]}),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795424400000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest-imports", "awsRegion": "us-east-1"}]},
    # The Segments API seed: its create body (with a concrete external id and name) and its
    # update body verbatim.
    "segments-create.json": ev("POST", SEGMENTS, SEGMENTS_PATH, headers=BEARER, body={
        "id": "heap-segment-42", "name": "Heap: trial users",
        "userIds": ["John@company.com", "Melissa@company.com"]}),
    "segments-list.json": ev("GET", SEGMENTS, SEGMENTS_PATH, headers=READ),
    "segments-get.json": ev("GET", SEGMENT, SEGMENT_PATH, headers=READ),
    "segments-update-add.json": ev("PUT", SEGMENT, SEGMENT_PATH, headers=BEARER,
                                   body='{"action": "add",\n    "userIds": ["jane.doe@walkme.com"]\n}'),
    "segments-update-remove.json": ev("PUT", SEGMENT, SEGMENT_PATH, headers=BEARER, body={
        "action": "remove", "userIds": ["John@company.com"]}),
    "segments-update-override.json": ev("PUT", SEGMENT, SEGMENT_PATH, headers=BEARER, body={
        "action": "override", "userIds": ["Melissa@company.com", "jane.doe@walkme.com"]}),
    "segments-members.json": ev("GET", SEGMENT + "/members", SEGMENT_PATH + "/members", headers=READ,
                                query="limit=100"),
    "segments-delete.json": ev("DELETE", SEGMENT, SEGMENT_PATH, headers=READ),
    # Rule segments: create (yields __RULE_SEGMENT_GUID__), list, get (and its JsonLogic
    # export), replace, the dry run of an unsaved rule, the user's segments
    # explained, the batch form, delete.
    "rule-segments-create.json": ev("POST", RULES, RULES_PATH, headers=BEARER, body={
        "name": "External or long-standing", "description": "the seeds' OR across integrations",
        "rule": EXTERNAL_RULE, "timezone": "America/New_York"}),
    "rule-segments-list.json": ev("GET", RULES, RULES_PATH, headers=READ, query="limit=50"),
    "rule-segments-get.json": ev("GET", RULE, RULE_PATH, headers=READ),
    "rule-segments-get-jsonlogic.json": ev("GET", RULE, RULE_PATH, headers=READ, query="format=jsonlogic"),
    # No If-Match: the last write wins, so the event can be sent again (make capacity does).
    "rule-segments-replace.json": ev("PUT", RULE, RULE_PATH, headers=BEARER, body={
        "name": "External or long-standing", "rule": EXTERNAL_RULE, "timezone": "UTC"}),
    "rule-segments-evaluate.json": ev("POST", RULES + "/evaluate", RULES_PATH + "/evaluate", headers=BEARER,
                                      body={"rule": {"all": [{"attribute": {"integration": "__INTEGRATION_ID__",
                                                                            "property": "Customer_Type"},
                                                              "op": "starts_with", "value": "ext",
                                                              "ignoreCase": True}]},
                                            "attributes": {"__INTEGRATION_ID__": {"Customer_Type": "External"}}}),
    "user-segments.json": ev("GET", SYSTEM + "/user/{userId}/segments",
                             SYSTEM_PATH + "/user/joe.doe%40walkme.example/segments", headers=READ),
    "user-segments-explain.json": ev("GET", SYSTEM + "/user/{userId}/segments",
                                     SYSTEM_PATH + "/user/joe.doe%40walkme.example/segments", headers=READ,
                                     query="explain=true"),
    "segments-evaluate.json": ev("POST", SYSTEM + "/segments/evaluate", SYSTEM_PATH + "/segments/evaluate",
                                 headers=BEARER, body={"userIds": ["joe.doe@walkme.example", "john.doe@walkme.example"]}),
    "rule-segments-delete.json": ev("DELETE", RULE, RULE_PATH, headers=READ),
    # The web console: its page, one asset, sign-in (the token route's Basic credentials; the
    # token comes back in a cookie), sign-out, and the account's usage.
    "console-index.json": ev("GET", "/console"),
    "console-asset.json": ev("GET", "/console/{proxy+}", "/console/app.js"),
    "console-session-create.json": ev("POST", "/console/session",
                                      headers={"content-type": "application/x-www-form-urlencoded",
                                               "authorization": "Basic __BASIC_CREDENTIALS__"},
                                      body="grant_type=client_credentials"),
    "console-session-delete.json": ev("DELETE", "/console/session"),
    "usage.json": ev("GET", "/public/v1/usage", headers=READ, query="from=2026-11-01&to=2026-11-30"),
}

if __name__ == "__main__":
    for name, event in EVENTS.items():
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(event, f, indent=2)
            f.write("\n")
    print(f"wrote {len(EVENTS)} events")
