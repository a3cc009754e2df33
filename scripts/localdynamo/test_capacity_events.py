"""`make capacity`'s event loop (scripts/capacity.py run_events) over every file of events/,
driven by a fake stack: no server, no functions. A new kind of event in events/ must come out
measured (an API Gateway request) or skipped with a reason, never stop the run."""
import json
import os
import shutil
import types
import uuid

import pytest

import capacity


class FakeStack(capacity.Stack):
    """Answers every call 200 (201 for a POST, with every id a create route answers) and meters
    one GetItem per call; records what was sent."""

    def __init__(self):
        self.demo = {"apiUrl": "http://127.0.0.1:1", "accountId": "acc", "systemGuid": "sys", "segmentGuid": "seg",
                     "integrationToken": "it", "integrationId": "int", "nestedIntegrationToken": "nit",
                     "moengageApiKey": "key", "clientId": "cid", "clientSecret": "secret"}
        self.basic, self.token, self.created, self.sent, self.calls = "basic", "token", {}, [], 0

    def request(self, method, path, headers=None, body=None, url=None):
        self.sent.append((method, path, json.dumps(headers or {}), body or ""))
        self.calls += 1
        if method == "POST":
            made = {key: str(uuid.uuid4()) for key in capacity.CREATES.values()}
            return 201, 1.0, json.dumps(made).encode()
        return 200, 1.0, b"{}"

    def meter(self, method="GET", path="/_meter", body=None):
        if method != "GET":
            self.calls = 0
            return {}
        return {"operations": {"GetItem": {"requests": self.calls}},
                "tables": {"t": {"rcu": 0.5 * self.calls, "wcu": 1.0 * self.calls}},
                "keys": [{"pk": "RATE#acc#0", "table": "t", "index": None, "requests": self.calls,
                          "rcu": 0, "wcu": 0.1 * self.calls}]}


def run(calls=3):
    stack = FakeStack()
    results, skipped = capacity.run_events(stack, capacity.route_events(), lambda _: calls,
                                           capacity.functions_memory(), log=lambda _: None)
    return stack, results, skipped


def events():
    return {name[:-5]: json.load(open(os.path.join(capacity.EVENTS, name)))
            for name in os.listdir(capacity.EVENTS) if name.endswith(".json")}


def test_every_event_is_measured_or_skipped_with_a_reason():
    stack, results, skipped = run()
    all_events = events()
    measured = {r["event"] for r in results}
    assert measured | {name for name, _ in skipped} == set(all_events)
    for name, event in all_events.items():
        is_route = capacity.not_a_route(event) is None
        assert (name in measured) == is_route, name
    for name, why in skipped:
        assert why and capacity.not_a_route(all_events[name]), (name, why)
    # Every request went out with its placeholders filled (a new one would need Stack.fill).
    leftover = [s for s in stack.sent if "__" in "".join(s)]
    assert not leftover, leftover[:3]


def test_the_import_workers_sqs_event_is_skipped_with_where_it_is_measured():
    _, _, skipped = run()
    reasons = dict(skipped)
    assert "SQS" in reasons["import-worker-upload"] and "bench-import" in reasons["import-worker-upload"]


def test_routes_are_measured_on_their_route_and_priced():
    _, results, _ = run(calls=4)
    by_event = {r["event"]: r for r in results}
    assert by_event["imports-get"]["route"] == "GET /public/v1/integrations/{integrationId}/imports/{importId}"
    for r in results:
        assert r["calls"] == 4 and r["rcu"] == 0.5 and r["wcu"] == 1.0, r["event"]
        mem, cost, floor, _ = capacity.price(r, capacity.functions_memory())
        assert mem >= 128 and cost > 0 and floor > 0, r["event"]


def test_the_report_has_a_row_per_event(tmp_path):
    _, results, skipped = run()
    args = types.SimpleNamespace(calls=3, steady_calls=3, before=None, out=str(tmp_path / "CAPACITY.md"))
    capacity.write_report(args, results, skipped, capacity.functions_memory(), capacity.key_patterns(), None)
    text = (tmp_path / "CAPACITY.md").read_text()
    for name in events():
        assert f"| {name} |" in text, name


@pytest.mark.parametrize("event", [
    {"Records": [{"eventSource": "aws:s3", "s3": {}}]},
    {"source": "aws.events", "detail-type": "Scheduled Event"},
    {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]},
])
def test_a_new_kind_of_event_is_skipped_not_a_crash(tmp_path, monkeypatch, event):
    shutil.copytree(capacity.EVENTS, tmp_path / "events")
    (tmp_path / "events" / "a-new-kind.json").write_text(json.dumps(event))
    monkeypatch.setattr(capacity, "EVENTS", str(tmp_path / "events"))
    _, results, skipped = run()
    assert "a-new-kind" in dict(skipped) and "a-new-kind" not in {r["event"] for r in results}


def test_the_evaluation_section_reports_each_evaluation_against_its_floor_and_the_hot_keys(tmp_path):
    _, results, skipped = run()
    sweep = {"account": "eval-x", "integrations": 41, "rules": 200, "conditions": 10,
             "rows": [{"integrations": n, "route": "GET /public/v1/user/{userId}", "calls": 3, "hits": 2,
                       "hit_rcu": 1.0, "rereads": 1, "reread_rcu": 3.0 * n} for n in (1, 10, 41)],
             "cold": [{"table": "ingest-segments", "pk": "acc#RSYS#sys", "rcu": 40.0, "check": 20.0},
                      {"table": "ingest-config", "pk": "ACCOUNT#acc", "rcu": 3.0, "check": 1.0}]}
    args = types.SimpleNamespace(calls=3, steady_calls=3, before=None, out=str(tmp_path / "CAPACITY.md"))
    capacity.write_report(args, results, skipped, capacity.functions_memory(), capacity.key_patterns(), None, sweep)
    text = (tmp_path / "CAPACITY.md").read_text()
    for event in ("user-segments", "user-segments-explain", "segments-evaluate", "rule-segments-evaluate"):
        assert f"| {event} |" in text.split("## Rule segments: units per evaluation")[1], event
    # The batch is measured with BATCH_USERS users, and its floor is two reads per user.
    assert f"| batch of {capacity.BATCH_USERS} users | segments-evaluate | 0.5 | 0.5 | 0 | 0 | {2 * capacity.BATCH_USERS} |" in text
    # The loads come from the check between edits, not the re-read after a change: 200 instances
    # (20,000/s at 10 ms) checking at 20 RCU are over the ceiling; at 1 RCU they are not.
    assert "| `acc#RSYS#sys` |" in text and "| 40 | 20 | 4,000 **over**" in text, text
    assert "| 3 | 1 | 200 ok" in text, text


@pytest.mark.parametrize("pk, kind", [
    ("acc#SUPPGATE#3", "Segments table: `<acc>#SUPPGATE#<0..7>`"),
    ("acc#SUPP#2", "Segments table: `<acc>#SUPP#<0..7>`"),
    ("ERASURES#acc", "Config table: `ERASURES#<acc>`"),
    ("acc#SEG#s#g#C4", "Segments table: `<acc>#SEG#<segmentGuid>#<generation>#C<p>`"),
    ("RATE#acc#0", "Config table: `RATE#<accountId>#<shard>`"),
])
def test_every_key_kind_of_the_tables_page_is_described(pk, kind):
    """The report names each key's kind from docs/TABLES.md, the erasure items' table-wide
    listing included (its keys were reported as `?`)."""
    assert capacity.describe(pk, capacity.key_patterns()).startswith(kind)
