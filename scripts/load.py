#!/usr/bin/env python3
"""`make load`: a mixed load against a running `make dev`, then a read-back of every write.

Python 3 standard library only. 50 worker threads (`--concurrency`), each with one keep-alive
HTTP/1.1 connection, send 10,000 requests (`--requests`) in a shuffled, seeded mix:

  token        POST /accounts/connect/token (HTTP Basic)
  user_1       POST /public/v1/user/data, one user (merge): Email, Type, Status
  user_100     POST /public/v1/user/data, 100 users (replace)
  segment_add  PUT  /public/v1/user/system/{systemGuid}/segment/{segmentGuid}, action add
  read_user    GET  /public/v1/user/{userId} of a user whose write was already acknowledged
  read_segment GET  /public/v1/user/system/{systemGuid}/segment/{segmentGuid}
  evaluate     GET  /public/v1/user/system/{systemGuid}/user/{userId}/segments of a user whose
               write was already acknowledged: the rule segment "Customer_Type is External"
               lists it exactly when its acknowledged Type is External

Every write uses user ids no other request uses, so what each 2xx promises can be checked:
reads during the run must already show every write acknowledged before they were sent
(user values; a segment's userCount), and afterwards every acknowledged user write is read
back with GET /public/v1/user/{userId} (the exact values written) and every acknowledged
segment add with the members listing (and userCount = members listed).

The load runs in its own account, created with the admin CLI (`cargo run -q -p admin`, the
environment of .dev/env) with a rate limit of 10,000 requests per second: the demo account
keeps `make dev`'s default of 100/s, which this load would exceed (the point here is 5xx and
lost writes, not 429s). The account's system and client come from the admin CLI, its
integration (the seeds' Email/Type/Status one) and segments from the API.

Prints throughput, latency percentiles per kind and overall, counts by status class, and the
verification; exits 1 on any 5xx, transport error, unexpected status or missing write.
The server is moto (single-threaded) behind `cargo lambda watch` (debug builds): absolute
figures are local-only.
"""

import argparse
import base64
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_DIR = os.path.join(ROOT, os.environ.get("DEV_DIR", ".dev"))
DEMO = os.path.join(DEV_DIR, "demo.json")
ENV = os.path.join(DEV_DIR, "env")
REPORT = os.path.join(DEV_DIR, "load-report.json")

# Share of each kind in the mix (per 10,000 requests). The 100-user updates write 100 users
# each and the read-back reads every user once (~12 reads/s locally), so they are kept at
# 0.5 % of the requests (5,000 users).
MIX = {
    "token": 1000,
    "user_1": 3050,
    "user_100": 50,
    "segment_add": 1500,
    "read_user": 2400,
    "read_segment": 2000,
    "evaluate": 1000,
}
WRITE_KINDS = ("user_1", "user_100", "segment_add")
SEGMENTS = 4
IDS_PER_ADD = 3
TYPES = ("Internal", "External", "Partner")
RATE_LIMIT = 10_000


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_env():
    if not os.path.exists(DEMO) or not os.path.exists(ENV):
        fail("no .dev/demo.json or .dev/env: start `make dev` first (in another terminal)")
    with open(DEMO) as f:
        demo = json.load(f)
    env = dict(os.environ)
    with open(ENV) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return demo, env


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, api_url, timeout):
        u = urllib.parse.urlsplit(api_url)
        if u.scheme != "http":
            fail(f"apiUrl {api_url!r}: only http:// (make dev) is supported")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.local = threading.local()

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON body or None, seconds); status None on a transport error."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            elapsed = time.perf_counter() - t0
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            return None, repr(e), time.perf_counter() - t0
        if resp.will_close:
            conn.close()
            self.local.conn = None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw[:200]
        return resp.status, data, elapsed


def admin(env, *args):
    cmd = ["cargo", "run", "-q", "--locked", "-p", "admin", "--", "--json", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def setup(client, env, run):
    """A fresh account (admin CLI) with a system, a client, an integration and segments."""
    account = f"load-{run}"
    print(f"==> load account {account}: admin account create --rate-limit {RATE_LIMIT}, system, client")
    admin(env, "account", "create", account, "--rate-limit", str(RATE_LIMIT))
    system = admin(env, "system", "create", "--account", account)["systemGuid"]
    c = admin(env, "client", "create", "--account", account, "--scopes", "all", "--name", "load")
    basic = "Basic " + base64.b64encode(f"{c['clientId']}:{c['clientSecret']}".encode()).decode()
    token_body = b"grant_type=client_credentials"
    token_headers = {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"}
    status, body, _ = client.request("POST", "/accounts/connect/token", token_body, token_headers)
    if status != 200:
        fail(f"token request: {status} {body}")
    bearer = {"Authorization": "Bearer " + body["access_token"]}
    print("==> integration (Email; Type -> Customer_Type, Status -> Customer_Status) and segments, through the API")
    status, integ, _ = client.request(
        "POST",
        "/public/v1/integrations",
        {
            "name": "Load: customer attributes",
            "userIdentifierProperty": "Email",
            "properties": [
                {"path": "Type", "name": "Customer_Type", "type": "String"},
                {"path": "Status", "name": "Customer_Status", "type": "String"},
            ],
        },
        bearer,
    )
    if status != 201:
        fail(f"integration create: {status} {integ}")
    segments = []
    for i in range(SEGMENTS):
        status, seg, _ = client.request(
            "POST",
            f"/public/v1/user/system/{system}/segment",
            {"id": f"load-{i}", "name": f"Load segment {i}", "userIds": []},
            bearer,
        )
        if status != 201:
            fail(f"segment create: {status} {seg}")
        segments.append(seg["segmentGuid"])
    status, rule, _ = client.request(
        "POST",
        f"/public/v1/user/system/{system}/rule-segment",
        {"name": "External customers", "rule": {"all": [{"attribute": {"integration": integ["integrationId"],
                                                                       "property": "Customer_Type"},
                                                         "op": "equals", "value": "External"}]}},
        bearer,
    )
    if status != 201:
        fail(f"rule segment create: {status} {rule}")
    # One user written before the load, so that reads sent before any load write was
    # acknowledged have a user to read (and to check).
    seed = {user_id(run, "seed"): {"Customer_Type": "Internal", "Customer_Status": "seed"}}
    status, body, _ = client.request(
        "POST",
        "/public/v1/user/data",
        {"token": integ["token"], "data": [{"Email": u, "Type": v["Customer_Type"], "Status": v["Customer_Status"]} for u, v in seed.items()]},
        bearer,
    )
    if status != 200:
        fail(f"seed user write: {status} {body}")
    return {
        "seed_user": seed,
        "account": account,
        "system": system,
        "bearer": bearer,
        "token_body": token_body,
        "token_headers": token_headers,
        "integration_id": integ["integrationId"],
        "integration_token": integ["token"],
        "segments": segments,
        "rule_segment": rule["segmentGuid"],
    }


def user_id(run, n):
    return f"load-{run}-u{n:06d}@example.com" if isinstance(n, int) else f"load-{run}-{n}@example.com"


def plan(total, run, seed):
    """The shuffled list of (kind, argument); every write gets ids of its own."""
    weights = sum(MIX.values())
    counts = {k: total * v // weights for k, v in MIX.items()}
    counts["read_user"] += total - sum(counts.values())
    kinds = [k for k, n in counts.items() for _ in range(n)]
    rng = random.Random(seed)
    rng.shuffle(kinds)
    next_user = 0
    next_member = 0
    out = []
    for kind in kinds:
        if kind in ("user_1", "user_100"):
            size = 1 if kind == "user_1" else 100
            users = {}
            for _ in range(size):
                uid = user_id(run, next_user)
                users[uid] = {"Customer_Type": rng.choice(TYPES), "Customer_Status": f"s{next_user}-{rng.randrange(10**6)}"}
                next_user += 1
            out.append((kind, users))
        elif kind == "segment_add":
            seg = rng.randrange(SEGMENTS)
            ids = [f"load-{run}-m{next_member + i:06d}" for i in range(IDS_PER_ADD)]
            next_member += IDS_PER_ADD
            out.append((kind, (seg, ids)))
        elif kind == "read_segment":
            out.append((kind, rng.randrange(SEGMENTS)))
        else:
            out.append((kind, rng.random()))
    return out, counts


class State:
    """What the acknowledged writes promise, shared by the workers."""

    def __init__(self, segments):
        self.lock = threading.Lock()
        self.users = {}  # userId -> expected attributes (acknowledged)
        self.user_list = []  # the same ids, for random reads
        self.members = [set() for _ in range(segments)]  # acknowledged adds
        self.attempted = [set() for _ in range(segments)]  # every add sent
        self.results = []  # (kind, status, seconds)
        self.problems = []  # unexpected answers and stale reads
        self.stale_reads = 0

    def problem(self, msg):
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(msg)


def user_view(body, integration_id):
    """The attributes of the load integration in a GET /public/v1/user answer."""
    if not isinstance(body, dict):
        return None
    for integ in body.get("integrations", []):
        if integ.get("integrationId") == integration_id:
            return integ.get("attributes")
    return None


def run_one(client, ctx, state, item):
    kind, arg = item
    sysg = ctx["system"]
    if kind == "token":
        status, body, secs = client.request("POST", "/accounts/connect/token", ctx["token_body"], ctx["token_headers"])
        if status == 200 and not (isinstance(body, dict) and body.get("access_token")):
            state.problem(f"token: 200 without access_token: {body}")
    elif kind in ("user_1", "user_100"):
        data = [{"Email": uid, "Type": v["Customer_Type"], "Status": v["Customer_Status"]} for uid, v in arg.items()]
        status, body, secs = client.request(
            "POST", "/public/v1/user/data", {"token": ctx["integration_token"], "data": data}, ctx["bearer"]
        )
        if status == 200:
            if not isinstance(body, dict) or body.get("accepted") != len(data):
                state.problem(f"{kind}: 200 but accepted != {len(data)}: {body}")
            with state.lock:
                state.users.update(arg)
                state.user_list.extend(arg)
    elif kind == "segment_add":
        seg, ids = arg
        with state.lock:
            state.attempted[seg].update(ids)
        status, body, secs = client.request(
            "PUT",
            f"/public/v1/user/system/{sysg}/segment/{ctx['segments'][seg]}",
            {"action": "add", "userIds": ids},
            ctx["bearer"],
        )
        if status == 200:
            with state.lock:
                state.members[seg].update(ids)
    elif kind == "read_user":
        with state.lock:
            uid = state.user_list[int(arg * len(state.user_list))]
            want = state.users[uid]
        status, body, secs = client.request("GET", "/public/v1/user/" + urllib.parse.quote(uid, safe=""), None, ctx["bearer"])
        if status == 200 and user_view(body, ctx["integration_id"]) != want:
            with state.lock:
                state.stale_reads += 1
            state.problem(f"read_user {uid}: acknowledged {want}, read {body}")
    elif kind == "evaluate":
        with state.lock:
            uid = state.user_list[int(arg * len(state.user_list))]
            want = state.users[uid]["Customer_Type"] == "External"
        path = f"/public/v1/user/system/{sysg}/user/{urllib.parse.quote(uid, safe='')}/segments"
        status, body, secs = client.request("GET", path, None, ctx["bearer"])
        if status == 200:
            guids = {s.get("segmentGuid") for s in (body.get("segments") or [])} if isinstance(body, dict) else set()
            if (ctx["rule_segment"] in guids) != want:
                with state.lock:
                    state.stale_reads += 1
                state.problem(f"evaluate {uid}: External is {want}, segments {body}")
    elif kind == "read_segment":
        seg = arg
        with state.lock:
            floor = len(state.members[seg])
        status, body, secs = client.request(
            "GET", f"/public/v1/user/system/{sysg}/segment/{ctx['segments'][seg]}", None, ctx["bearer"]
        )
        if status == 200 and (not isinstance(body, dict) or body.get("userCount", -1) < floor):
            with state.lock:
                state.stale_reads += 1
            state.problem(f"read_segment {seg}: {floor} ids acknowledged before the read, userCount in {body}")
    else:
        raise ValueError(kind)
    if status != 200:
        state.problem(f"{kind}: {status} {str(body)[:300]}")
    with state.lock:
        state.results.append((kind, status, secs, status == 200))


def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def latency_table(results):
    by_kind = defaultdict(list)
    for kind, _, secs, _ in results:
        by_kind[kind].append(secs * 1000)
        by_kind["all"].append(secs * 1000)
    rows = {}
    for kind in [*MIX, "all"]:
        v = sorted(by_kind.get(kind, []))
        rows[kind] = {
            "n": len(v),
            "p50": pct(v, 50),
            "p90": pct(v, 90),
            "p99": pct(v, 99),
            "max": v[-1] if v else float("nan"),
        }
    return rows


def status_class(status):
    return "transport error" if status is None else f"{status // 100}xx"


def read_back(client, ctx, state, concurrency):
    """Every acknowledged user write and segment add, read through the API."""
    missing, verified, problems = 0, 0, []
    lock = threading.Lock()

    def check_user(uid):
        nonlocal missing, verified
        want = state.users[uid]
        status, body, _ = client.request("GET", "/public/v1/user/" + urllib.parse.quote(uid, safe=""), None, ctx["bearer"])
        got = user_view(body, ctx["integration_id"]) if status == 200 else None
        with lock:
            if got == want:
                verified += 1
            else:
                missing += 1
                if len(problems) < 20:
                    problems.append(f"user {uid}: wrote {want}, read {status} {str(body)[:300]}")
        return status

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = Counter(status_class(s) for s in pool.map(check_user, list(state.users)))
    users_secs = time.perf_counter() - t0
    users_verified = verified

    seg_report = []
    for i, guid in enumerate(ctx["segments"]):
        base = f"/public/v1/user/system/{ctx['system']}/segment/{guid}"
        listed, cursor = [], None
        while True:
            q = "?limit=10000" + (f"&cursor={urllib.parse.quote(cursor, safe='')}" if cursor else "")
            status, body, _ = client.request("GET", base + "/members" + q, None, ctx["bearer"])
            statuses[status_class(status)] += 1
            if status != 200:
                fail(f"members listing of segment {i}: {status} {body}")
            listed.extend(body["userIds"])
            cursor = body.get("nextCursor")
            if not cursor:
                break
        status, head, _ = client.request("GET", base, None, ctx["bearer"])
        statuses[status_class(status)] += 1
        members = set(listed)
        acked, attempted = state.members[i], state.attempted[i]
        lost = acked - members
        extra = members - attempted
        missing += len(lost)
        verified += len(acked & members)
        if lost:
            problems.append(f"segment {i}: {len(lost)} acknowledged ids not listed, e.g. {sorted(lost)[:5]}")
        if extra:
            problems.append(f"segment {i}: {len(extra)} ids listed that were never added, e.g. {sorted(extra)[:5]}")
        if len(listed) != len(members):
            problems.append(f"segment {i}: the listing returned {len(listed) - len(members)} ids twice")
        if status != 200 or head.get("userCount") != len(members):
            problems.append(f"segment {i}: userCount {head.get('userCount') if status == 200 else status} != {len(members)} listed")
        seg_report.append(
            {"segment": i, "acknowledged": len(acked), "listed": len(members), "userCount": head.get("userCount")}
        )
    return {
        "usersVerified": users_verified,
        "segmentIdsVerified": verified - users_verified,
        "verified": verified,
        "missing": missing,
        "statuses": dict(statuses),
        "userReadSeconds": users_secs,
        "segments": seg_report,
        "problems": problems,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = ap.parse_args()

    demo, env = load_env()
    api = demo.get("apiUrl")
    if not api:
        fail(".dev/demo.json has no apiUrl: restart `make dev`")
    client = Client(api, args.timeout)
    status, _, _ = client.request("GET", "/.well-known/jwks.json")
    if status != 200:
        fail(f"the API at {api} does not answer ({status}): start `make dev` first (in another terminal)")

    run = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    ctx = setup(client, env, run)
    items, counts = plan(args.requests, run, args.seed)
    state = State(SEGMENTS)
    state.users.update(ctx["seed_user"])
    state.user_list.extend(ctx["seed_user"])
    users_planned = sum(len(a) for k, a in items if k in ("user_1", "user_100"))
    print(f"==> {len(items)} requests at {args.concurrency} concurrent against {api}: "
          + ", ".join(f"{k} {n}" for k, n in counts.items())
          + f" ({users_planned} distinct users written, {counts['segment_add'] * IDS_PER_ADD} segment ids added)")

    done = [0]

    def work(item):
        run_one(client, ctx, state, item)
        with state.lock:
            done[0] += 1
            if done[0] % 1000 == 0:
                print(f"    {done[0]} / {len(items)} ({time.perf_counter() - t0:.0f} s)", flush=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        for f in [pool.submit(work, it) for it in items]:
            f.result()
    duration = time.perf_counter() - t0

    results = state.results
    classes = Counter(status_class(s) for _, s, _, _ in results)
    by_kind_status = Counter((k, s) for k, s, _, _ in results)
    unexpected = sum(1 for *_, ok in results if not ok)
    lat = latency_table(results)
    acked = Counter(k for k, s, _, ok in results if ok and k in WRITE_KINDS)

    print(f"\n==> read-back of every acknowledged write ({len(state.users)} users, "
          f"{sum(len(m) for m in state.members)} segment ids)")
    rb = read_back(client, ctx, state, args.concurrency)

    n5xx = classes.get("5xx", 0)
    errors = classes.get("transport error", 0)
    print("\n==> load")
    print(f"requests:   {len(results)} at {args.concurrency} concurrent, one keep-alive connection each")
    print(f"duration:   {duration:.1f} s")
    print(f"throughput: {len(results) / duration:.1f} req/s")
    print("status:     " + ", ".join(f"{c} {n}" for c, n in sorted(classes.items())))
    print("by kind:    " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(by_kind_status.items(), key=str)))
    print(f"\n{'latency ms':<14}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for kind, r in lat.items():
        print(f"{kind:<14}{r['n']:>6}{r['p50']:>9.1f}{r['p90']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}")
    print(f"\nacknowledged writes: user_1 {acked['user_1']}, user_100 {acked['user_100']} "
          f"({len(state.users)} users), segment_add {acked['segment_add']} "
          f"({sum(len(m) for m in state.members)} ids)")
    print(f"reads during the load that missed an earlier acknowledged write: {state.stale_reads}")
    print(f"read-back: {rb['verified']} acknowledged writes verified ({rb['usersVerified']} users with their "
          f"values, {rb['segmentIdsVerified']} segment ids listed), {rb['missing']} missing, "
          f"in {rb['userReadSeconds']:.1f} s; read-back status: "
          + ", ".join(f"{c} {n}" for c, n in sorted(rb["statuses"].items())))
    for s in rb["segments"]:
        print(f"  segment {s['segment']}: {s['acknowledged']} ids acknowledged, {s['listed']} listed, userCount {s['userCount']}")
    print(f"5xx: {n5xx}   transport errors: {errors}   unexpected statuses: {unexpected}   missing writes: {rb['missing']}")

    report = {
        "run": run,
        "account": ctx["account"],
        "apiUrl": api,
        "requests": len(results),
        "concurrency": args.concurrency,
        "mix": counts,
        "durationSeconds": round(duration, 2),
        "throughputPerSecond": round(len(results) / duration, 1),
        "statusClasses": dict(classes),
        "latencyMs": {k: {m: round(v, 1) for m, v in r.items()} for k, r in lat.items()},
        "acknowledged": dict(acked),
        "usersWritten": len(state.users),
        "segmentIdsAdded": sum(len(m) for m in state.members),
        "staleReads": state.stale_reads,
        "readBack": {k: v for k, v in rb.items() if k != "problems"},
        "problems": state.problems + rb["problems"],
    }
    with open(REPORT, "w") as f:
        json.dump(report, f, indent=2)
    print(f"(report: {os.path.relpath(REPORT, ROOT)})")

    for p in (state.problems + rb["problems"])[:20]:
        print("  problem: " + p, file=sys.stderr)
    bad = n5xx or errors or unexpected or rb["missing"] or state.stale_reads or rb["problems"]
    if errors:
        print("  hint: `cargo lambda watch` restarts every function when a file of the workspace changes and "
              "drops the requests in flight (they time out); keep the sources still during the run, or start "
              "`DEV_NO_RELOAD=1 make dev`", file=sys.stderr)
    if bad:
        print("FAIL", file=sys.stderr)
        sys.exit(1)
    print("OK: 0 5xx, 0 missing writes")


if __name__ == "__main__":
    main()
