#!/usr/bin/env python3
"""`make capacity`: what every API call costs on AWS, measured by the local DynamoDB's meter.

Against a running stack (DEV_DIR's demo.json and env: `make dev`, or the one scripts/capacity.sh
starts on free ports), for every route of events/*.json (one API Gateway event per route, so the
list follows the handlers; an event of another kind, such as the import worker's SQS event, is
listed as not measured, with the reason): reset the meter (POST /_meter/reset), make --calls calls after two
unmetered warm-up calls, read GET /_meter, and price the call on AWS on-demand:
  DynamoDB  $0.625 per million write request units, $0.125 per million read request units
  API Gateway HTTP API $1.00 per million requests
  Lambda arm64 $0.20 per million requests + $0.0000133334 per GB-second, at the measured
  duration and the function's MemorySize in template.yaml
beside the call's floor (API Gateway + Lambda request fee + 1 ms at that memory + the units of
the items any design must read or write for it: FLOORS below) and the ratio cost / floor.

Then the evaluation sweep (--no-evaluation skips it): in a fresh account, the user read and the
rule-segment evaluation call by call at 1, 10 and 41 integrations (cache hits vs the instance's
once-a-second re-reads), and one re-read of a 200-rule set: the units per instance-second of the
keys every evaluation depends on, worked out at 20,000 evaluations/s.

Then the scale simulation: scripts/load.py's mix with the server's scale factor set to --scale
(POST /_meter/config), the busiest partition keys and every key that throttled, named from the
key patterns of docs/TABLES.md; and a projection of the measured units per call to SPEC's
targets (10,000 user updates/s per account, 50,000 member writes/s per segment).

Writes docs/CAPACITY.md (--out) and DEV_DIR/capacity.json. Python standard library only.
"""
import argparse
import base64
import datetime
import glob
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_DIR = os.path.join(ROOT, os.environ.get("DEV_DIR", ".dev"))
EVENTS = os.path.join(ROOT, "events")

WRU, RRU = 0.625e-6, 0.125e-6
APIGW, LAMBDA_REQ, GBS = 1.00e-6, 0.20e-6, 0.0000133334

# Order of the routes: what creates comes before what reads, deletes last. Routes not named
# here run in the middle with no special handling.
FIRST = ["token", "jwks", "openid-configuration", "integrations-create", "user-data-seed-single",
         "user-data-seed-multiple", "user-data-seed-nested", "user-data-operations", "moengage-track-user", "user-get",
         "segments-create"]
LAST = ["segments-update-add", "segments-update-remove", "segments-update-override",
        "integrations-delete", "segments-delete", "rule-segments-delete", "user-delete", "user-erase",
        "user-suppression-delete"]


def n_users(body):
    return len(body.get("data") or [None])


def n_ids(body):
    return len(set(body.get("userIds") or []))


# The least any design must read (RRU) and write (WRU) for one call, and why. A function of the
# event's body (a dict, or None).
FLOORS = {
    "token": (lambda b: (0.5, 0), "read the client (one item ≤ 4 KB, eventually consistent)"),
    "jwks": (lambda b: (0, 0), "public keys: cacheable in the function"),
    "openid-configuration": (lambda b: (0, 0), "static document"),
    "integrations-create": (lambda b: (0, 1), "write one item ≤ 1 KB"),
    "integrations-get": (lambda b: (0.5, 0), "read one item"),
    "integrations-list": (lambda b: (0.5, 0), "read one partition page ≤ 4 KB"),
    "integrations-patch": (lambda b: (0.5, 1), "read and write one item"),
    "integrations-delete": (lambda b: (0, 1), "delete one item"),
    "integrations-test": (lambda b: (0.5, 0), "read the integration; writes nothing"),
    "user-data-seed-single": (lambda b: (0, n_users(b)), "one ≤ 1 KB item per user"),
    "user-data-seed-multiple": (lambda b: (0, n_users(b)), "one ≤ 1 KB item per user"),
    "user-data-seed-nested": (lambda b: (0, n_users(b)), "one ≤ 1 KB item per user"),
    "user-data-operations": (lambda b: (0, n_users(b)), "one ≤ 1 KB item per user"),
    "moengage-track-user": (lambda b: (0, 1), "one ≤ 1 KB item"),
    "user-get": (lambda b: (1, 0), "the user's items, one strongly consistent read ≤ 4 KB"),
    "user-delete": (lambda b: (0, 1), "delete the user's item(s): at least one"),
    "user-erase": (lambda b: (0, n_ids(b)), "delete or tombstone one item per user: at least one each"),
    "user-suppression-delete": (lambda b: (0, 1), "delete the suppression: one item"),
    "segments-create": (lambda b: (0, n_ids(b) + 1), "one item per member + the segment"),
    "segments-get": (lambda b: (0.5, 0), "read one item"),
    "segments-list": (lambda b: (0.5, 0), "read one partition page"),
    "segments-members": (lambda b: (0.5, 0), "read one partition page"),
    "segments-update-add": (lambda b: (0, n_ids(b)), "one item per id"),
    "segments-update-remove": (lambda b: (0, n_ids(b)), "one item per id"),
    "segments-update-override": (lambda b: (0, n_ids(b)), "one item per id (at least)"),
    "segments-delete": (lambda b: (0, 1), "delete the segment's head"),
    "imports-create": (lambda b: (0, 1), "write the import's record ≤ 1 KB"),
    "imports-get": (lambda b: (0.5, 0), "read one item"),
    "imports-list": (lambda b: (0.5, 0), "read one partition page"),
    "rule-segments-create": (lambda b: (0, 1), "write one item ≤ 1 KB"),
    "rule-segments-list": (lambda b: (0.5, 0), "read one partition page"),
    "rule-segments-get": (lambda b: (0.5, 0), "read one item"),
    "rule-segments-get-jsonlogic": (lambda b: (0.5, 0), "read one item"),
    "rule-segments-replace": (lambda b: (0, 1), "write one item ≤ 1 KB"),
    "rule-segments-delete": (lambda b: (0, 1), "delete one item"),
    "rule-segments-evaluate": (lambda b: (0, 0), "the rule and the attributes are in the body: nothing to read"),
    "user-segments": (lambda b: (2, 0), "the user's items and its memberships (what the user read reads): "
                                        "two strongly consistent reads ≤ 4 KB"),
    "user-segments-explain": (lambda b: (2, 0), "the user's items and its memberships, as without explain"),
    "segments-evaluate": (lambda b: (2 * len((b or {}).get("userIds") or []), 0),
                          "per user: its items and its memberships, two strongly consistent reads"),
}


# Routes whose per-call cost is measured over --steady-calls calls (SPEC's 10,000/s targets).
STEADY = ("user-data-seed-single", "moengage-track-user")
# The protections' keys (docs/TABLES.md): their units per call are reported apart.
PROTECTION_PREFIXES = ("RATE#", "USAGE#", "IDEM#")


def protections_share(r):
    """(RRU, WRU) per call on the protections' keys (of the meter's busiest keys)."""
    keys = [k for k in r["keys"] if k["pk"].startswith(PROTECTION_PREFIXES)]
    return (sum(k["rcu"] for k in keys) / r["calls"], sum(k["wcu"] for k in keys) / r["calls"])


def before_rows(path):
    """event -> (RRU, WRU, $/M, ratio) from a CAPACITY.md written by this script."""
    rows = {}
    for line in open(path).read().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[1] and not cells[1].startswith("-") and cells[1] != "event":
            try:
                rows[cells[1]] = (float(cells[4]), float(cells[5]), float(cells[8]), float(cells[10]))
            except ValueError:
                pass
    return rows


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


class Stack:
    def __init__(self, dev_dir):
        try:
            self.demo = json.load(open(os.path.join(dev_dir, "demo.json")))
            env = dict(line.split("=", 1) for line in open(os.path.join(dev_dir, "env")).read().split("\n") if "=" in line)
        except OSError:
            fail(f"no {dev_dir}/demo.json or env: start `make dev` (or run `make capacity`, which starts a stack)")
        self.api = urllib.parse.urlsplit(self.demo["apiUrl"])
        self.db = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL_DYNAMODB"])
        self.basic = base64.b64encode(f'{self.demo["clientId"]}:{self.demo["clientSecret"]}'.encode()).decode()
        self.conn = None
        self.created = {}  # create route's event -> the ids its calls made (CREATES)
        self.token = self.get_token()

    def request(self, method, path, headers=None, body=None, url=None):
        url = url or self.api
        for attempt in range(2):
            if url is self.api and self.conn is None:
                self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            conn = self.conn if url is self.api else http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            try:
                started = time.perf_counter()
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, (time.perf_counter() - started) * 1000, data
            except (http.client.HTTPException, OSError):
                if url is self.api:
                    self.conn = None
                if attempt:
                    raise

    def meter(self, method="GET", path="/_meter", body=None):
        status, _, data = self.request(method, path, {"Content-Type": "application/json"}, body, url=self.db)
        if status != 200:
            fail(f"the local DynamoDB has no meter ({method} {path}: {status}): is it scripts/moto_server.py?")
        return json.loads(data)

    def get_token(self):
        status, _, data = self.request("POST", "/accounts/connect/token",
                                       {"Authorization": f"Basic {self.basic}",
                                        "Content-Type": "application/x-www-form-urlencoded"},
                                       "grant_type=client_credentials")
        if status != 200:
            fail(f"token: {status} {data[:200]!r}")
        return json.loads(data)["access_token"]

    def fill(self, text):
        d = self.demo
        subs = {
            "__BASIC_CREDENTIALS__": self.basic, "__ACCESS_TOKEN__": self.token,
            "__SYSTEM_GUID__": d["systemGuid"], "__SEGMENT_GUID__": d["segmentGuid"],
            "__INTEGRATION_TOKEN__": d["integrationToken"], "__INTEGRATION_ID__": d["integrationId"],
            "__IMPORT_ID__": (self.created.get("imports-create") or [""])[0],
            "__RULE_SEGMENT_GUID__": (self.created.get("rule-segments-create") or [""])[0],
            "__NESTED_INTEGRATION_TOKEN__": d.get("nestedIntegrationToken", ""),
            "__WORKSPACE_ID__": d["accountId"],
            "__MOENGAGE_BASIC__": base64.b64encode(f'{d["accountId"]}:{d["moengageApiKey"]}'.encode()).decode(),
        }
        for k, v in subs.items():
            text = text.replace(k, v)
        return text


def functions_memory():
    """{binary: MemorySize} from template.yaml (Globals' MemorySize unless the function sets one)."""
    text = open(os.path.join(ROOT, "template.yaml")).read()
    default = int(re.search(r"^Globals:.*?^\s+MemorySize:\s*(\d+)", text, re.S | re.M).group(1))
    out = {}
    for block in re.split(r"\n  (?=\w+:\n    Type: AWS::Serverless::Function)", text)[1:]:
        binary = re.search(r"Binary:\s*([\w-]+)", block)
        mem = re.search(r"\n      MemorySize:\s*(\d+)", block.split("\n  Outputs:")[0])
        if binary:
            out[binary.group(1)] = int(mem.group(1)) if mem else default
    return out


def function_of(path):
    router = tomllib.load(open(os.path.join(ROOT, "Cargo.toml"), "rb"))["workspace"]["metadata"]["lambda"]["watch"]["router"]
    for pattern, target in router.items():
        rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(pattern)) + "$"
        if re.match(rx, path):
            return target if isinstance(target, str) else target[0]["function"]
    return "?"


TABLE_NAMES = {"config": "Config table", "end users": "End-users table", "segments": "Segments table",
               "signing keys": "Signing keys table"}


def key_patterns():
    """(regex, description) for every key pattern of docs/TABLES.md's tables."""
    pats, table = [], ""
    for line in open(os.path.join(ROOT, "docs", "TABLES.md")):
        if line.startswith("## "):
            table = line[3:].split("(")[0].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        # Rows of a table-wide listing (the erasure items) name their table in a first column.
        of = table
        if len(cells) >= 4 and cells[0] in TABLE_NAMES and cells[1].startswith("`"):
            of, cells = TABLE_NAMES[cells[0]], cells[1:]
        if len(cells) >= 3 and cells[0].startswith("`"):
            pk = cells[0].strip("`")
            rx = "^" + re.sub(r"<[^>]+>", "[^#]+", re.escape(pk).replace(r"\<", "<").replace(r"\>", ">")) + "$"
            what = cells[2] if len(cells) >= 4 else f"sk {cells[1]}"
            pats.append((rx, f"{of}: `{pk}` {re.sub(r'[*`]', '', what)[:70]}", len(re.sub(r"<[^>]+>", "", pk))))
    # The most specific pattern first (`<acc>#SEGMENTS` before `<accountId>#<userId>`).
    return [(rx, what) for rx, what, _ in sorted(pats, key=lambda p: -p[2])]


def describe(pk, patterns):
    for rx, what in patterns:
        if re.match(rx, pk):
            return what
    return "?"


def route_events():
    names = [os.path.basename(p)[:-5] for p in glob.glob(os.path.join(EVENTS, "*.json"))]
    middle = sorted(n for n in names if n not in FIRST and n not in LAST)
    return [n for n in FIRST if n in names] + middle + [n for n in LAST if n in names]


def vary(name, body, i):
    """Each call of a write of users or members names new ones (the targets are many users, not
    one user written again), so that only the keys every call shares stay hot in the meter."""
    if not body or not body.lstrip().startswith("{"):
        return body
    b = json.loads(body)
    if name.startswith("user-data") or name == "moengage-track-user":
        for user in b.get("data") or [b]:
            for field in ("Email", "properties.ID", "customer_id"):
                if isinstance(user.get(field), str):
                    user[field] = f"{user[field]}-{i}"
    elif name == "segments-update-add":
        b["userIds"] = [f"{u}-{i}" for u in b.get("userIds") or []]
    else:
        return body
    return json.dumps(b)


# Create routes whose ids later events need: event -> the id's field in the create's answer.
CREATES = {"segments-create": "segmentGuid", "integrations-create": "integrationId", "imports-create": "importId",
           "rule-segments-create": "segmentGuid"}


# Users of the batch evaluation measured (its most).
BATCH_USERS = 100


def seeded_users(stack, n):
    """`n` user ids that user-data-seed-single wrote (its first user, then the ids vary() gave
    its later calls): the batch evaluation reads users that exist."""
    body = json.loads(json.loads(stack.fill(open(os.path.join(EVENTS, "user-data-seed-single.json")).read()))["body"])
    first = body["data"][0]["Email"]
    return [first] + [f"{first}-{i}" for i in range(1, n)]


def not_a_route(event):
    """Why an event of events/ that is not an API Gateway HTTP API request is not measured here,
    or None when it is one (a dict with requestContext.http and routeKey)."""
    if isinstance(event, dict) and isinstance((event.get("requestContext") or {}).get("http"), dict) \
            and "routeKey" in event:
        return None
    records = event.get("Records") if isinstance(event, dict) else None
    sources = sorted({str(r.get("eventSource") or r.get("EventSource")) for r in records or [] if isinstance(r, dict)})
    if sources == ["aws:sqs"]:
        return ("an SQS event (the import worker's trigger), not an API call: no route to price; "
                "the worker's units per row are `make bench-import`'s (docs/PERFORMANCE.md)")
    kind = f"a {', '.join(sources)} event" if sources else "an event"
    return f"{kind} that is not an API Gateway request: no route to price"


def measure(stack, name, calls, warm=2):
    text = open(os.path.join(EVENTS, name + ".json")).read()
    event = json.loads(stack.fill(text))
    why = not_a_route(event)
    if why:
        return None, why
    if "__IMPORT_ID__" in text and not stack.created.get("imports-create"):
        return None, "needs an import made by imports-create, which made none"
    method = event["requestContext"]["http"]["method"]
    path = event["rawPath"] + (("?" + event["rawQueryString"]) if event.get("rawQueryString") else "")
    headers = {k: v for k, v in event.get("headers", {}).items() if k != "host"}
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    if name == "segments-evaluate":
        body = json.dumps({"userIds": seeded_users(stack, BATCH_USERS)})
    total = warm + calls
    variants = [(path, vary(name, body, i) if i else body) for i in range(total)]  # the first: as sent
    if name == "segments-create":
        variants = [(path, json.dumps(dict(json.loads(body), id=f"cap-{time.time_ns()}-{i}"))) for i in range(total)]
    elif name in ("segments-delete", "integrations-delete", "rule-segments-delete"):
        made = stack.created.get(name.replace("delete", "create"), [])
        if len(made) < total:
            return None, f"needs {total} items made by its create route, has {len(made)}"
        old = path.rsplit("/", 1)[1]
        variants = [(path.replace(old, made[i]), body) for i in range(total)]
    elif name == "user-delete":
        old = path.rsplit("/", 1)[1]
        ids = [f"cap-delete-{time.time_ns()}-{i}" for i in range(total)]
        for uid in ids:  # each call erases one user that exists (written before the meter reset)
            data = {"token": stack.demo["integrationToken"], "data": [{"Email": uid, "Type": "Internal"}]}
            stack.request("POST", "/public/v1/user/data", {"Authorization": f"Bearer {stack.token}",
                                                          "Content-Type": "application/json"}, json.dumps(data))
        variants = [(path.replace(old, urllib.parse.quote(uid, safe="")), body) for uid in ids]
    elif name == "user-suppression-delete":
        old = path.rsplit("/", 1)[1]
        ids = [f"cap-lift-{time.time_ns()}-{i}" for i in range(total)]
        # each call lifts one suppression that exists (erased before the meter reset)
        stack.request("POST", "/public/v1/user/erase", {"Authorization": f"Bearer {stack.token}",
                                                        "Content-Type": "application/json"},
                      json.dumps({"userIds": ids}))
        variants = [(path.replace(old, urllib.parse.quote(uid, safe="")), body) for uid in ids]
    statuses, times, results = [], [], []
    for i, (p, b) in enumerate(variants):
        if i == warm:
            stack.meter("POST", "/_meter/reset")
        status, ms, data = stack.request(method, p, headers, b)
        if i >= warm:
            statuses.append(status)
            times.append(ms)
        results.append(data)
    m = stack.meter()
    if name in CREATES:
        key = CREATES[name]
        stack.created[name] = [json.loads(r).get(key) for r in results if r.startswith(b"{") and key.encode() in r]
    ops = {op: v["requests"] / calls for op, v in m["operations"].items()}
    rcu = sum(v["rcu"] for v in m["tables"].values()) / calls
    wcu = sum(v["wcu"] for v in m["tables"].values()) / calls
    return {
        "route": event["routeKey"], "event": name, "statuses": sorted(set(statuses)),
        "calls": calls, "ms": statistics.median(times), "rcu": rcu, "wcu": wcu, "ops": ops,
        "keys": m["keys"], "body": json.loads(body) if body and body.lstrip().startswith("{") else None,
    }, None


def price(r, memory):
    mem = memory.get(function_of(r["route"].split(" ", 1)[1]), 128)
    lam = LAMBDA_REQ + GBS * mem / 1024 * r["ms"] / 1000
    cost = APIGW + lam + r["wcu"] * WRU + r["rcu"] * RRU
    fl = FLOORS.get(r["event"])
    frr, fwr = fl[0](r["body"] or {}) if fl else (0, 0)
    floor = APIGW + LAMBDA_REQ + GBS * mem / 1024 * 0.001 + fwr * WRU + frr * RRU
    return mem, cost, floor, (frr, fwr, fl[1] if fl else "no floor defined: API Gateway + Lambda only")


def per_m(x):
    return f"{x * 1e6:.3f}"


def projection(results, patterns):
    """Per-second load on each key class at SPEC's targets, from the measured units per call."""
    rows = []
    targets = {"user-data-seed-single": (10_000, "10,000 single-user updates/s (one account)"),
               "moengage-track-user": (10_000, "10,000 MoEngage updates/s (one account)"),
               "segments-update-add": (50_000, "50,000 member writes/s (one segment)")}
    for r in results:
        if r["event"] not in targets:
            continue
        rate, label = targets[r["event"]]
        calls_per_s = rate / (n_ids(r["body"] or {}) if r["event"].startswith("segments") else 1)
        # Keys hit by every call (same pk on each call) carry calls_per_s x units per call.
        for k in r["keys"]:
            share = k["requests"] / r["calls"]
            if share < 0.5 and not k["pk"].startswith(("RATE#", "USAGE#", "ITOKEN#", "ACCOUNT#")):
                continue  # a key only some calls touch (a shard among many): not a hot key
            # (An account-wide key written or read once per lease or per second of an instance
            # is touched by few calls, and still carries its units per call times the rate.)
            w, rd = k["wcu"] / r["calls"] * calls_per_s, k["rcu"] / r["calls"] * calls_per_s
            rows.append((label, k, w, rd, describe(k["pk"], patterns)))
    # One row per kind of key (the 100 shards of a segment are one kind): the busiest of them.
    grouped = {}
    for label, k, w, rd, what in rows:
        g = (label, k["table"], k["index"], what)
        best = grouped.get(g)
        if best is None or w + rd > best[2] + best[3]:
            grouped[g] = [label, k, w, rd, what, 0]
        grouped[g][5] += 1
    return list(grouped.values())


def load(requests, stack=None, scale=None):
    """Runs scripts/load.py: (exit code, its last lines, users written/s, segment ids added/s, meter).

    With a scale: load.py's setup (account, integration, segments) runs at scale 1, the load at
    `scale` from its "==> N requests at" line, and the meter is read when the read-back begins
    (which runs at scale 1 again: it verifies, it is not part of the mix)."""
    report = os.path.join(DEV_DIR, "load-report.json")
    if os.path.exists(report):
        os.remove(report)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "load.py"), "--requests", str(requests)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, DEV_DIR=os.path.relpath(DEV_DIR, ROOT), PYTHONUNBUFFERED="1"))
    lines, m = [], None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if stack is not None and scale and line.startswith("==> ") and " requests at " in line:
            stack.meter("POST", "/_meter/config", json.dumps({"scale": scale}))
            stack.meter("POST", "/_meter/reset")
        elif stack is not None and scale and line.startswith("==> read-back"):
            m = stack.meter()
            stack.meter("POST", "/_meter/config", json.dumps({"scale": 1}))
    rc = proc.wait()
    try:
        rep = json.load(open(report))
        secs = rep["durationSeconds"] or 1
        rates = (rep["usersWritten"] / secs, rep["segmentIdsAdded"] / secs, rep["mix"].get("evaluate", 0) / secs)
    except (OSError, KeyError, ValueError):
        rates = (0.0, 0.0, 0.0)
    return rc, [x for x in lines if x.strip()][-12:], rates, m


def scale_run(stack, args, patterns):
    scale, users_per_s = args.scale, 0.0
    stack.meter("POST", "/_meter/config", json.dumps({"scale": 1}))
    if scale <= 0:  # auto: one account's user updates at SPEC's 10,000/s
        _, _, (users_per_s, *_), _ = load(args.calibration_requests)
        scale = round(10_000 / users_per_s) if users_per_s else 100
        print(f"calibration: {users_per_s:.1f} user updates/s here; scale factor {scale}")
    started = time.time()
    rc, summary, rates, m = load(args.load_requests, stack, scale)
    seconds = time.time() - started
    if m is None:  # load.py stopped before its read-back
        m = stack.meter()
    stack.meter("POST", "/_meter/config", json.dumps({"scale": 1}))
    m["scale"], m["calibration_users_per_s"] = scale, users_per_s
    return m, seconds, rc, summary, rates


# The evaluation sweep (--no-evaluation skips it): integrations of 24 properties each in a
# fresh account, and the rule segments of 10 conditions each its system holds at the end.
SWEEP_INTEGRATIONS = (1, 10, 41)
SWEEP_PROPERTIES = 24
SWEEP_RULES, SWEEP_CONDITIONS = 200, 10
# SPEC's evaluation target for one account, and DynamoDB's per-partition-key ceilings.
EVALUATIONS_PER_S = 20_000
RCU_CEILING, WCU_CEILING = 3_000, 1_000
# Warm evaluation durations on Lambda the scale table is worked for (instances = rate x duration).
DURATIONS_MS = (10, 25, 50)


def per_call_keys(stack, method, path, headers, body=None):
    """One call between a meter reset and a read: (status, {(table, pk): rcu}, {(table, pk): wcu})."""
    stack.meter("POST", "/_meter/reset")
    status, _, _ = stack.request(method, path, headers, body)
    m = stack.meter()
    rcu = {(k["table"], k["pk"]): k["rcu"] for k in m["keys"] if k["rcu"]}
    wcu = {(k["table"], k["pk"]): k["wcu"] for k in m["keys"] if k["wcu"]}
    return status, rcu, wcu


def cached_set_key(pk):
    """Whether a key is one of the sets an instance keeps for a second (a system's rule set
    `<acc>#RSYS#<system>`, its static list and counts `<acc>#SYS#<system>`, the account's
    systems and integration definitions `ACCOUNT#<acc>`): read once per instance-second."""
    return "#RSYS#" in pk or "#SYS#" in pk or pk.startswith("ACCOUNT#")


def split_units(rcu):
    """RCU of one call or run, {(table, pk): rcu}: (the users' own items and memberships, the
    instance's cached sets, the protections')."""
    cached = sum(v for (_, pk), v in rcu.items() if cached_set_key(pk))
    prot = sum(v for (_, pk), v in rcu.items() if pk.startswith(PROTECTION_PREFIXES))
    return sum(rcu.values()) - cached - prot, cached, prot


def evaluation_sweep(stack, calls, log=print):
    """A fresh account (the admin CLI, as load.py's) with one user of one attribute: the user
    read and the evaluation at 1, 10 and 41 integrations of 24 properties, call by call, each
    call a cache hit (its units: the user's own) or the instance's once-a-second re-read (its
    units on the cached sets' keys); then 200 rule segments of 10 conditions and one re-read of
    the whole set: the units each hot key takes per instance-second."""
    import load as load_py  # scripts/load.py: its admin CLI and environment
    _, env = load_py.load_env()
    run = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    account = f"eval-{run}"
    load_py.admin(env, "account", "create", account, "--rate-limit", "10000", "--attribute-limit", "1000")
    system = load_py.admin(env, "system", "create", "--account", account)["systemGuid"]
    c = load_py.admin(env, "client", "create", "--account", account, "--scopes", "all", "--name", "eval")
    basic = base64.b64encode(f"{c['clientId']}:{c['clientSecret']}".encode()).decode()
    status, _, data = stack.request("POST", "/accounts/connect/token",
                                    {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
                                    "grant_type=client_credentials")
    if status != 200:
        fail(f"sweep token: {status} {data[:200]!r}")
    headers = {"Authorization": "Bearer " + json.loads(data)["access_token"], "Content-Type": "application/json"}

    def post(path, body, want=(200, 201)):
        st, _, d = stack.request("POST", path, headers, json.dumps(body))
        if st not in want:
            fail(f"sweep: POST {path}: {st} {d[:300]!r}")
        return json.loads(d)

    def integration(i):
        return post("/public/v1/integrations", {
            "name": f"Eval {i}", "userIdentifierProperty": "Email",
            "properties": [{"path": f"p{j}", "name": f"p{j}", "type": "String"} for j in range(SWEEP_PROPERTIES)]})

    first = integration(0)
    uid = f"eval-{run}@example.com"
    post("/public/v1/user/data", {"token": first["token"], "data": [{"Email": uid, "p0": "gold"}]})
    q = urllib.parse.quote(uid, safe="")
    routes = (("GET /public/v1/user/{userId}", f"/public/v1/user/{q}"),
              ("GET .../user/{userId}/segments", f"/public/v1/user/system/{system}/user/{q}/segments"),
              ("GET .../user/{userId}/segments?explain=true", f"/public/v1/user/system/{system}/user/{q}/segments?explain=true"))
    rows, have = [], 1
    for target in SWEEP_INTEGRATIONS:
        while have < target:
            integration(have)
            have += 1
        for label, path in routes:
            for _ in range(2):
                stack.request("GET", path, headers)
            hits, rereads = [], []
            for _ in range(calls):
                status, rcu, _ = per_call_keys(stack, "GET", path, headers)
                if status != 200:
                    fail(f"sweep: GET {path}: {status}")
                own, cached, _ = split_units(rcu)
                (rereads if cached else hits).append((own, cached))
            rows.append({"integrations": target, "route": label, "calls": calls, "hits": len(hits),
                         "hit_rcu": statistics.mean(o for o, _ in hits) if hits else None,
                         "rereads": len(rereads),
                         "reread_rcu": statistics.mean(c for _, c in rereads) if rereads else None})
            log(f"sweep {target:3} integrations {label:45} hits {len(hits):3} at {rows[-1]['hit_rcu']} RCU (user's own); "
                f"re-reads {len(rereads)} at {rows[-1]['reread_rcu']} RCU")
    # The largest rule set: SWEEP_RULES rule segments of SWEEP_CONDITIONS conditions each.
    rules_path = f"/public/v1/user/system/{system}/rule-segment"
    for i in range(SWEEP_RULES):
        post(rules_path, {"name": f"rule {i}", "rule": {"all": [
            {"attribute": {"integration": first["integrationId"], "property": f"p{j}"},
             "op": "equals", "value": f"value {i}-{j} of a typical length"} for j in range(SWEEP_CONDITIONS)]}},
             want=(201,))
    seg_path = routes[1][1]

    def reread():
        for _ in range(20):  # until the call is the instance's re-read (the set is a second old)
            time.sleep(1.1)
            status, rcu, _ = per_call_keys(stack, "GET", seg_path, headers)
            if split_units(rcu)[1]:
                return {k: v for k, v in rcu.items() if cached_set_key(k[1])}
        return {}

    # The first re-read after the creates reads the changed set whole. The local emulator turns
    # calls over its warm instances, each of which reads a changed set once, so the check (the
    # stamps only, what every instance pays each second between edits) is the least of the next
    # re-reads, by key.
    cold = reread()
    steady = {}
    for _ in range(6):
        for k, v in reread().items():
            steady[k] = min(v, steady.get(k, v))
    keys = sorted(set(cold) | set(steady), key=lambda k: -(cold.get(k, 0)))
    return {"account": account, "rows": rows, "cold": [
        {"table": t, "pk": pk, "rcu": cold.get((t, pk), 0), "check": steady.get((t, pk), 0)} for (t, pk) in keys],
        "rules": SWEEP_RULES, "conditions": SWEEP_CONDITIONS, "integrations": have}


def evaluation_report(results, memory, sweep, patterns):
    """CAPACITY.md's section on rule-segment evaluation: units against the floor, the
    definitions sweep and the hot keys at EVALUATIONS_PER_S."""
    out = ["", "## Rule segments: units per evaluation against the floor\n",
           "From the table above (the demo account: its integrations, one rule segment, the demo user in one "
           "static segment). The floor is the user's own items and its static memberships, what the user read "
           "already reads: two strongly consistent reads of ≤ 4 KB per user; a dry run reads nothing. The "
           "batch row is 100 users that exist (written by user-data-seed-single).\n",
           "Each call's units are split by key: the users' own (their items, memberships and the heads of "
           "those memberships), the cached sets' (the instance's re-read, once a second: locally a debug "
           "build serves a few calls a second, so the re-read weighs on each; on AWS an instance serving "
           "100 calls a second spreads it over 100) and the protections'. *Own / floor* is the ratio "
           "that does not depend on the call rate.\n",
           "| evaluation | event | RRU / call | of which the users' own | the cached sets' re-reads | protections | floor RRU | own / floor | own RRU / user |",
           "|---|---|---|---|---|---|---|---|---|"]
    names = {"user-segments": "one user", "user-segments-explain": "one user, `?explain=true`",
             "segments-evaluate": f"batch of {BATCH_USERS} users", "rule-segments-evaluate": "dry run (rule and attributes sent)"}
    for r in results:
        if r["event"] not in names:
            continue
        _, _, _, (frr, _, _) = price(r, memory)
        users = len((r["body"] or {}).get("userIds") or [None])
        own, cached, prot = (x / r["calls"] for x in split_units({(k["table"], k["pk"]): k["rcu"] for k in r["keys"]}))
        # The meter lists the busiest keys only: what it leaves out is the users' (small, many).
        own = r["rcu"] - cached - prot
        ratio = f"{own / frr:.2f}" if frr else ("—" if own < 0.005 else "∞")
        out.append(f"| {names[r['event']]} | {r['event']} | {r['rcu']:.4g} | {own:.4g} | {cached:.4g} | {prot:.4g} | "
                   f"{frr:g} | {ratio} | {own / users:.4g} |")
    if not sweep:
        return out
    out += ["", "### The definitions cache: units per read at 1, 10 and 41 integrations\n",
            f"A fresh account ({sweep['account']}), one user with one attribute, integrations of {SWEEP_PROPERTIES} "
            "properties each (41 × 24 = 984: near the account's 1,000-attribute limit). Each call is metered alone: "
            "a *hit* is served from the instance's cached definitions and rule set (its units: the user's own "
            "items and memberships only); a *re-read* is the call that found the cache a second old and read "
            "the sets again (once per instance per second, whatever the call rate). Before the cache, the "
            "issue measured 3.0 / 10.0 / 18.0 / 34.0 RCU per user read at 1 / 10 / 20 / 41 integrations, "
            "every call.\n",
            "| integrations | route | calls | hits | RCU per hit | re-reads | RCU per re-read (cached sets' keys) |",
            "|---|---|---|---|---|---|---|"]
    for row in sweep["rows"]:
        fmt = lambda x: "—" if x is None else f"{x:g}"
        out.append(f"| {row['integrations']} | `{row['route']}` | {row['calls']} | {row['hits']} | {fmt(row['hit_rcu'])} | "
                   f"{row['rereads']} | {fmt(row['reread_rcu'])} |")
    out += ["", f"### Hot keys at {EVALUATIONS_PER_S:,} evaluations per second (one account)\n",
            "Per evaluation, the only units are on the user's own keys (one user's items and memberships: "
            "spread over the account's users, no key is shared by the calls). The keys every evaluation "
            "depends on are the cached sets' (the system's rule set, its static list, the system, the "
            "account's integration definitions): each instance reads them at most once a second, so with N "
            "instances each such key takes at most N reads a second, whatever the call rate. N is the "
            "Lambda concurrency: rate × duration (one call at a time per instance). Measured here, with "
            f"{sweep['integrations']} integrations of {SWEEP_PROPERTIES} properties and "
            f"{sweep['rules']} rule segments of {sweep['conditions']} conditions (the most a system holds), "
            "units per key: the re-read after a change (the set and the definitions are read whole once per "
            "instance after an edit), and the check every instance makes each second between edits (the "
            "stamps only: docs/DECISIONS.md \"Rule segments: routes\"), which the loads are computed from; "
            f"ceiling {RCU_CEILING:,} RCU/s and {WCU_CEILING:,} WCU/s per partition key "
            "(DynamoDB's published limits).\n",
            "| table | pk | what | RCU per re-read after a change | RCU per check, unchanged | " + " | ".join(
                f"RCU/s at {d} ms ({EVALUATIONS_PER_S * d // 1000} instances)" for d in DURATIONS_MS)
            + " | most instances under the ceiling |",
            "|---|---|---|---|---|" + "---|" * len(DURATIONS_MS) + "---|"]
    for k in sweep["cold"]:
        cells = []
        for d in DURATIONS_MS:
            n = EVALUATIONS_PER_S * d // 1000
            load = n * k["check"]
            cells.append(f"{load:,.0f} {'ok' if load <= RCU_CEILING else '**over**'}")
        most = f"{int(RCU_CEILING // k['check']):,}" if k["check"] else "any"
        out.append(f"| {k['table']} | `{k['pk'][:70]}` | {describe(k['pk'], patterns)} | {k['rcu']:g} | "
                   f"{k['check']:g} | " + " | ".join(cells) + f" | {most} |")
    return out


def write_report(args, results, skipped, memory, patterns, scale, sweep=None):
    today = datetime.date.today().isoformat()
    out = [f"# Capacity and cost per call\n",
           f"Measured by `make capacity` on {today} (scripts/capacity.py): {args.calls} calls per route after two warm-up calls, "
           "units from the local DynamoDB's meter (`GET /_meter`, DynamoDB's published sizing rules: docs/LOCAL_DYNAMODB.md). "
           "Prices: AWS on-demand, us-east-1: DynamoDB $0.625/M WRU and $0.125/M RRU, API Gateway HTTP API $1.00/M, "
           "Lambda arm64 $0.20/M requests + $0.0000133334/GB-s at the function's MemorySize (template.yaml) and the "
           "measured median duration, usage sums flushed every 5 s per instance as deployed "
           "(`USAGE_FLUSH_SECONDS`, `make dev`'s default too). The duration is the local round trip through `cargo lambda watch` (debug build, "
           "moto): an upper bound of the Lambda's own. Floor: API Gateway + Lambda request + 1 ms + the units of the "
           "items any design must read or write for the call (FLOORS in scripts/capacity.py, basis in the last column).\n",
           "| route | event | status | DynamoDB requests / call | RRU / call | WRU / call | ms | MB | $ / M calls | floor $ / M | cost / floor | floor basis |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mem, cost, floor, (frr, fwr, basis) = price(r, memory)
        ops = ", ".join(f"{v:g} {k}" for k, v in sorted(r["ops"].items())) or "0"
        out.append(f"| `{r['route']}` | {r['event']} | {','.join(map(str, r['statuses']))} | {ops} | {r['rcu']:g} | {r['wcu']:g} | "
                   f"{r['ms']:.0f} | {mem} | {per_m(cost)} | {per_m(floor)} | {cost / floor:.2f} | {frr:g} RRU + {fwr:g} WRU: {basis} |")
    for name, why in skipped:
        out.append(f"| | {name} | not measured: {why} | | | | | | | | | |")
    out += ["", f"The single-user update and MoEngage rows ({', '.join(STEADY)}) are {args.steady_calls} calls each "
            "(`--steady-calls`): steady state, one warm instance calling one after the other, so that what an instance "
            "pays once a second (the integration's re-read) or once per lease (the rate limit) is amortized as on AWS.",
            "", "### The protections' own share (rate limit, usage, idempotency keys)\n",
            "Units per call on `RATE#`, `USAGE#` and `IDEM#` keys, included in the figures above.\n",
            "| event | calls | RRU / call | WRU / call | $ / M calls |", "|---|---|---|---|---|"]
    for r in results:
        prr, pwr = protections_share(r)
        out.append(f"| {r['event']} | {r['calls']} | {prr:.4g} | {pwr:.4g} | {per_m(prr * RRU + pwr * WRU)} |")
    if args.before:
        old = before_rows(args.before)
        out += ["", f"### Before and after (before: `{args.before}`, the previous run of this script)\n",
                "| event | RRU before → after | WRU before → after | $ / M before → after | cost / floor before → after |",
                "|---|---|---|---|---|"]
        for r in results:
            if r["event"] not in old:
                continue
            o = old[r["event"]]
            mem, cost, floor, _ = price(r, memory)
            out.append(f"| {r['event']} | {o[0]:g} → {r['rcu']:.4g} | {o[1]:g} → {r['wcu']:.4g} | {o[2]:.3f} → {per_m(cost)} | "
                       f"{o[3]:.2f} → {cost / floor:.2f} |")
    out += evaluation_report(results, memory, sweep, patterns)
    out += ["", "## Hot keys at SPEC's targets (projection)\n",
            "Units per call on each partition key that every call of the route touches, times the calls per second "
            "of SPEC's targets. DynamoDB serves at most 1,000 WCU/s and 3,000 RCU/s per partition key.\n",
            "The calls per second are the target divided by the users or ids of the route's sample event "
            "(one per call: the worst case; a segment's 50,000 member writes/s sent as 25,000-id calls is 2 calls/s).\n",
            "| target | table | pk (busiest of this kind, this run) | keys of this kind | what | WCU/s | RCU/s | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for label, k, w, rd, what, n in projection(results, patterns):
        verdict = "**throttles**" if w > 1000 or rd > 3000 else "ok"
        out.append(f"| {label} | {k['table']}{'/' + k['index'] if k['index'] else ''} | `{k['pk'][:70]}` | {n} | {what} | {w:,.0f} | {rd:,.0f} | {verdict} |")
    out += ["", "`RATE#<account>#<shard>`: the limiter spreads an account over ⌈limit / per-shard rate⌉ shards "
            "(the rate limiter, `protect::rate`); the demo account measured here has `make dev`'s limit of 100/s, so one "
            "shard: an account allowed 10,000/s has proportionally more shards (the scale simulation's account does). "
            "Keys of the other kinds do not depend on the account's limit."]
    if scale:
        m, seconds, rc, summary, (users_s, ids_s, evals_s) = scale
        sc = m["scale"]
        out += ["", f"## Scale simulation: `make load`'s mix at DEV_DYNAMODB_SCALE = {sc:g}\n",
                f"scripts/load.py --requests {args.load_requests} against the same stack, every unit counted {sc:g} times "
                f"against the per-key buckets, so a key's local rate × {sc:g} is its rate on AWS. The scale factor was "
                f"chosen so that the account's user updates ({m.get('calibration_users_per_s', 0):.1f}/s here in a calibration "
                f"run at scale 1) stand for SPEC's 10,000/s; throttled calls are retried and slow the run down. During the run: {users_s:.1f} users written/s = {users_s * sc:,.0f}/s on AWS "
                f"(target 10,000), {ids_s:.1f} segment ids added/s = {ids_s * sc:,.0f}/s on AWS over 4 segments "
                f"(target 50,000 per segment: the segments' keys below are at {ids_s * sc / 4 / 50_000:.1%} of it). "
                f"{seconds:.0f} s; load.py exit code {rc}; {m['throttled']} throttled requests, {m['conflicts']} transaction conflicts.\n",
                "| table | pk | what | RCU | WCU | peak RCU/s × scale | peak WCU/s × scale | requests | throttled |",
                "|---|---|---|---|---|---|---|---|---|"]
        for k in m["keys"][:15]:
            out.append(f"| {k['table']}{'/' + k['index'] if k['index'] else ''} | `{k['pk'][:70]}` | {describe(k['pk'], patterns)} | "
                       f"{k['rcu']:g} | {k['wcu']:g} | {k['peak_rcu_per_s'] * m['scale']:,.0f} | {k['peak_wcu_per_s'] * m['scale']:,.0f} | "
                       f"{k['requests']} | {k['throttled']} |")
        cached = [k for k in m["keys"] if cached_set_key(k["pk"])]
        out += ["", f"The evaluation path in the mix: {evals_s:.1f} evaluations/s here = {evals_s * sc:,.0f}/s on AWS "
                f"(users' own keys: one user's each, spread). The keys every evaluation depends on are read once "
                f"a second by each local instance; counted {sc:g} times, they stand for {sc:g} instances re-reading "
                f"them, which at {EVALUATIONS_PER_S:,} evaluations/s is a warm duration of "
                f"{sc / EVALUATIONS_PER_S * 1000:.0f} ms. The load account holds one rule segment and one integration: "
                "the section above works the same keys for the largest sets. `ACCOUNT#<acc>` is read by other routes "
                "of the mix too (the token route, the user-data function's definitions): its peak is theirs and the "
                "re-reads' together.\n",
                "| table | pk | what | RCU | requests | peak RCU/s × scale | verdict |", "|---|---|---|---|---|---|---|"]
        for k in cached:
            peak = k["peak_rcu_per_s"] * sc
            out.append(f"| {k['table']} | `{k['pk'][:70]}` | {describe(k['pk'], patterns)} | {k['rcu']:g} | {k['requests']} | "
                       f"{peak:,.0f} | {'ok' if peak <= RCU_CEILING else '**over**'} |")
        hot = [k for k in m["keys"] if k["throttled"]]
        out += ["", "Keys that throttled: " + ("none." if not hot else ", ".join(
            f"`{k['pk'][:70]}` ({describe(k['pk'], patterns)}; {k['throttled']}×)" for k in hot)), "",
                "load.py's summary:", "```", *summary, "```"]
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")


def run_events(stack, names, calls_of, memory, log=print):
    """Measures every event of `names` through `stack` (a Stack, or anything with its request,
    meter, fill and created): (results, [(event, why not measured)])."""
    results, skipped = [], []
    for name in names:
        r, why = measure(stack, name, calls_of(name))
        if r is None:
            skipped.append((name, why))
            log(f"{name:28} skipped: {why}")
            continue
        results.append(r)
        mem, cost, floor, _ = price(r, memory)
        log(f"{name:28} {r['statuses']} {r['rcu']:7.2f} RRU {r['wcu']:7.2f} WRU {r['ms']:7.1f} ms "
            f"${per_m(cost)}/M floor ${per_m(floor)}/M x{cost / floor:.2f}")
    return results, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--steady-calls", type=int, default=1000,
                    help="calls of the single-user update and MoEngage routes (steady state: amortizes what an "
                         "instance pays once per second, the integration's re-read and the rate limit's lease)")
    ap.add_argument("--before", help="a previous CAPACITY.md: adds a before/after table of the routes both measured")
    ap.add_argument("--scale", type=float, default=0.0,
                    help="scale factor of the simulation (default: chosen so the account's user updates stand for 10,000/s)")
    ap.add_argument("--calibration-requests", type=int, default=400)
    ap.add_argument("--load-requests", type=int, default=2000)
    ap.add_argument("--no-load", action="store_true", help="skip the scale simulation")
    ap.add_argument("--no-evaluation", action="store_true",
                    help="skip the evaluation sweep (definitions at 1/10/41 integrations, a 200-rule set's re-read)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "CAPACITY.md"))
    ap.add_argument("--rewrite", action="store_true",
                    help="measure nothing: write the report again from DEV_DIR/capacity.json (the last run's figures)")
    args = ap.parse_args()
    memory = functions_memory()
    patterns = key_patterns()
    if args.rewrite:
        last = json.load(open(os.path.join(DEV_DIR, "capacity.json")))
        write_report(args, last["results"], last["skipped"], memory, patterns, last.get("scale"), last.get("sweep"))
        print(f"wrote {os.path.relpath(args.out, ROOT)} from {os.path.relpath(DEV_DIR, ROOT)}/capacity.json")
        return
    stack = Stack(DEV_DIR)
    results, skipped = run_events(stack, route_events(), lambda n: args.steady_calls if n in STEADY else args.calls, memory)
    sweep = None if args.no_evaluation else evaluation_sweep(stack, args.calls)
    scale = None if args.no_load else scale_run(stack, args, patterns)
    if scale:
        m, seconds, rc, _, (users_s, ids_s, *_) = scale
        print(f"scale simulation: {seconds:.0f} s at scale {m['scale']:g} ({users_s * m['scale']:,.0f} user updates/s, "
              f"{ids_s * m['scale']:,.0f} segment ids/s on AWS), load.py exit {rc}, "
              f"{m['throttled']} throttled, {m['conflicts']} conflicts")
        for k in m["keys"][:10]:
            print(f"  {k['table']:20} {k['pk'][:50]:50} wcu {k['wcu']:8.1f} rcu {k['rcu']:8.1f} throttled {k['throttled']}")
    write_report(args, results, skipped, memory, patterns, scale, sweep)
    with open(os.path.join(DEV_DIR, "capacity.json"), "w") as f:
        json.dump({"results": results, "skipped": skipped, "sweep": sweep, "scale": scale}, f, indent=1, default=str)
    print(f"wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
