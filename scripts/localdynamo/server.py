"""A local DynamoDB that bills and refuses like AWS, on top of moto 5.2.5 (see
docs/LOCAL_DYNAMODB.md): capacity meter (ReturnConsumedCapacity, GET /_meter), service
limits, per-partition-key throughput, transaction conflicts, concurrent requests.

It is a WSGI middleware in front of moto's own server application: every DynamoDB request
(header X-Amz-Target: DynamoDB_20120810.<Op>) is checked, metered and, unless refused, handed
to moto in the same thread. Everything else (S3, SQS, /moto-api) goes to moto untouched.
"""
import argparse
import contextlib
import io
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
import zlib

from . import patches, sizing
from .meter import Buckets, Meter

from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.dynamodb.models import dynamodb_backends  # noqa: E402

PREFIX = "com.amazonaws.dynamodb.v20120810#"
TARGET = "DynamoDB_20120810."
THROTTLE_MSG = ("Throughput exceeds the current capacity of your table or index. DynamoDB is "
                "automatically scaling your table or index so please try again shortly. If "
                "exceptions persist, check if you have a hot key: "
                "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html")
THROTTLE_GSI_MSG = ("Throughput exceeds the current capacity for one or more global secondary "
                    "indexes. DynamoDB is automatically scaling your index so please try again "
                    "shortly.")
CONFLICT_MSG = "Transaction is ongoing for the item"
HASH_KEY_MSG = ("One or more parameter values were invalid: Size of hashkey has exceeded the "
                "maximum size limit of2048 bytes")
RANGE_KEY_MSG = ("One or more parameter values were invalid: Aggregated size of all range keys "
                 "has exceeded the size limit of 1024 bytes")
ITEM_SIZE_MSG = "Item size has exceeded the maximum allowed size"
BATCH_WRITE_MSG = ("1 validation error detected: Value '{{{}}}' at 'requestItems' failed to "
                   "satisfy constraint: Map value must satisfy constraint: [Member must have "
                   "length less than or equal to 25, Member must have length greater than or "
                   "equal to 1]")
TXN_COUNT_MSG = ("1 validation error detected: Value '[{}]' at 'transactItems' failed to satisfy "
                 "constraint: Member must have length less than or equal to 100")
TXN_SAME_ITEM_MSG = "Transaction request cannot include multiple operations on one item"
TXN_SIZE_MSG = "Transaction request size has exceeded the maximum allowed size of 4 MB"
BATCH_SIZE_MSG = "Request size has exceeded the maximum allowed size of 16 MB"

MB = 1024 * 1024


class Refused(Exception):
    def __init__(self, kind, message, extra=None, message_key="message"):
        super().__init__(message)
        self.kind, self.message, self.extra, self.message_key = kind, message, extra or {}, message_key


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


# --- item identity, locks and transaction holds -----------------------------------------------
class Stripes:
    """Striped locks per item: single-item writes and transactions on one item are serialized,
    everything else runs concurrently. Several stripes are always taken in sorted order."""

    def __init__(self, n=1024):
        self._locks = [threading.Lock() for _ in range(n)]

    @contextlib.contextmanager
    def hold(self, iids):
        idx = sorted({hash(i) % len(self._locks) for i in iids})
        for i in idx:
            self._locks[i].acquire()
        try:
            yield
        finally:
            for i in reversed(idx):
                self._locks[i].release()


class Holds:
    """Items of TransactWriteItems in flight (from the request's arrival to its commit)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held = set()

    def try_hold(self, iids):
        with self._lock:
            busy = [i for i, iid in enumerate(iids) if iid in self._held]
            if not busy:
                self._held.update(iids)
            return busy

    def held(self, iid):
        return iid in self._held

    def release(self, iids):
        with self._lock:
            self._held.difference_update(iids)


def key_of(table, attrs):
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def iid(table, key):
    return (table.name, json.dumps(key_of(table, key), sort_keys=True))


def value_text(v):
    (_, val), = v.items()
    return val if isinstance(val, str) else json.dumps(val)


def item_json(item):
    return item.to_json()["Attributes"] if item is not None else None


# --- indexes ------------------------------------------------------------------------------------
def indexes(table):
    gsis = list(table.global_indexes or [])
    out = []
    for idx in gsis + list(table.indexes or []):
        schema = idx.schema
        h = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
        r = [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
        proj = getattr(idx, "projection", None) or {}
        out.append((idx.name, idx in gsis, h, r, proj))
    return out


def index_entry(table, idx, item):
    """The index's copy of an item (None when the item lacks an index key attribute)."""
    if item is None:
        return None
    _, _, h, r, proj = idx
    if any(a not in item for a in h + r):
        return None
    ptype = proj.get("ProjectionType", "ALL")
    if ptype == "ALL":
        return item
    names = set(h + r + [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else []))
    if ptype == "INCLUDE":
        names |= set(proj.get("NonKeyAttributes") or [])
    return {k: v for k, v in item.items() if k in names}


def write_cost(table, old, new, transactional=False):
    """Write units of one item write: (table units, {index: (units, is_gsi, index pk)})."""
    units = sizing.write_units(max(sizing.item_size(old), sizing.item_size(new)), transactional)
    per_index = {}
    for idx in indexes(table):
        name, gsi, h, r, _ = idx
        eo, en = index_entry(table, idx, old), index_entry(table, idx, new)
        if eo == en:
            continue
        u = 0.0
        if eo is not None and en is not None and all(eo[a] == en[a] for a in h + r):
            u = sizing.write_units(max(sizing.item_size(eo), sizing.item_size(en)), transactional)
        else:  # a put, a delete, or an index key change (a delete plus a put)
            for e in (eo, en):
                if e is not None:
                    u += sizing.write_units(sizing.item_size(e), transactional)
        pk = value_text((en or eo)[h[0]])
        per_index[name] = (u, gsi, pk)
    return units, per_index


def add_up(per_table, name, units, per_index):
    """Sums one item's units into a per-table total of a multi-item call."""
    agg = per_table.setdefault(name, [0.0, {}])
    agg[0] += units
    for n, (u, g, ipk) in per_index.items():
        prev = agg[1].get(n, (0.0, g, ipk))
        agg[1][n] = (prev[0] + u, g, ipk)


def consumed(table_name, units, per_index, kind, rcc):
    total = units + sum(u for u, _, _ in per_index.values())
    field = "ReadCapacityUnits" if kind == "r" else "WriteCapacityUnits"
    c = {"TableName": table_name, "CapacityUnits": total, field: total}
    if rcc == "INDEXES":
        c["Table"] = {"CapacityUnits": units, field: units}
        for gsi_flag, label in ((True, "GlobalSecondaryIndexes"), (False, "LocalSecondaryIndexes")):
            part = {n: {"CapacityUnits": u, field: u} for n, (u, g, _) in per_index.items() if g == gsi_flag}
            if part:
                c[label] = part
    return c


# --- the middleware -------------------------------------------------------------------------------
class LocalDynamo:
    def __init__(self, app):
        self.app = app
        self.meter = Meter()
        self.scale = env_float("DEV_DYNAMODB_SCALE", 1)
        self.txn_s = env_float("DEV_DYNAMODB_TXN_MS", 20) / 1000.0
        self.buckets = Buckets(wcu_rate=env_float("DEV_DYNAMODB_WCU_PER_KEY", 1000),
                               rcu_rate=env_float("DEV_DYNAMODB_RCU_PER_KEY", 3000),
                               burst_s=env_float("DEV_DYNAMODB_BURST_S", 1), scale=self.scale)
        self.stripes = Stripes()
        self.holds = Holds()

    # WSGI entry
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_meter"):
            return self.meter_endpoint(environ, start_response, path)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET):
            if path.startswith("/moto-api/reset"):
                self.buckets.reset()
            if environ.get("REQUEST_METHOD") == "PUT" and environ.get("CONTENT_TYPE", "").startswith(
                    "application/x-www-form-urlencoded"):
                # `curl --data-binary @file <presigned URL>` sends this type; S3 stores the bytes
                # as they are, but moto's server parses them as a form and stores nothing.
                environ["CONTENT_TYPE"] = "application/octet-stream"
            return self.app(environ, start_response)
        op = target[len(TARGET):]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        handler = getattr(self, "op_" + op, None)
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            handler = None
        self.meter.request(op)
        if handler is None:
            status, headers, body = self.forward(environ, raw)
        else:
            try:
                status, headers, body = handler(environ, req, raw)
            except Refused as e:
                status, headers, body = self.refusal(e)
            except Exception:  # a bug here: say so, as DynamoDB's 500 (the SDKs retry it)
                traceback.print_exc()
                status, headers, body = self.reply("500 Internal Server Error", {
                    "__type": PREFIX + "InternalServerError", "message": f"local server error in {op}; see its log"})
        start_response(status, headers)
        return [body]

    def meter_endpoint(self, environ, start_response, path):
        method = environ.get("REQUEST_METHOD")
        if path.rstrip("/") == "/_meter/reset" and method == "POST":
            self.meter.reset()
            self.buckets.reset()
            body = b"{}"
        elif path.rstrip("/") == "/_meter/config" and method == "POST":
            # {"scale": x, "txn_ms": y}: the scale factor and the commit time, changed live.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            conf = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
            if "scale" in conf:
                self.scale = self.buckets.scale = float(conf["scale"])
                self.buckets.reset()
            if "txn_ms" in conf:
                self.txn_s = float(conf["txn_ms"]) / 1000.0
            body = json.dumps({"scale": self.scale, "txn_ms": self.txn_s * 1000}).encode()
        elif path.rstrip("/") == "/_meter" and method == "GET":
            body = json.dumps(self.meter.snapshot(self.scale)).encode()
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "GET /_meter or POST /_meter/reset"}']
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def refusal(self, e):
        body = {"__type": PREFIX + e.kind, e.message_key: e.message}
        body.update(e.extra)
        if e.kind in ("TransactionConflictException",) or (
                e.kind == "TransactionCanceledException" and "TransactionConflict" in e.message):
            self.meter.conflict()
        return self.reply("400 Bad Request", body)

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        hs = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", str(uuid.uuid4())),
              ("Content-Length", str(len(data))), ("x-amz-crc32", str(zlib.crc32(data)))]
        return status, hs, data

    def forward(self, environ, raw):
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(raw)
        env["CONTENT_LENGTH"] = str(len(raw))
        captured = {}

        def start(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(env, start)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return captured["status"], captured["headers"], body

    def call(self, environ, req, raw=None):
        """Hands a (possibly rewritten) request to moto: (status, headers, body, parsed, error type)."""
        data = raw if raw is not None else json.dumps(req).encode()
        status, headers, body = self.forward(environ, data)
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = None
        err = None
        if not status.startswith("200"):
            err = (parsed or {}).get("__type", "").split("#")[-1] or "Error"
        return status, headers, body, parsed, err

    def respond(self, status, headers, parsed, cc, rcc):
        """moto's answer with our ConsumedCapacity (or none, unless it was asked for)."""
        if parsed is None:
            return status, headers, b""
        parsed.pop("ConsumedCapacity", None)
        if rcc in ("TOTAL", "INDEXES") and cc is not None:
            parsed["ConsumedCapacity"] = cc
        data = json.dumps(parsed).encode()
        hs = [(k, v) for k, v in headers if k.lower() not in ("content-length", "x-amz-crc32")]
        hs += [("Content-Length", str(len(data))), ("x-amz-crc32", str(zlib.crc32(data)))]
        return status, hs, data

    # helpers
    def table(self, environ, name):
        account = os.environ.get("MOTO_ACCOUNT_ID") or environ.get("HTTP_X_MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
        m = re.search(r"Credential=[^/]*/[^/]*/([^/]*)/", environ.get("HTTP_AUTHORIZATION", ""))
        region = m.group(1) if m else "us-east-1"
        try:
            return dynamodb_backends[account][region].tables.get(name)
        except Exception:
            return None

    def check_key(self, table, attrs):
        try:
            h = attrs[table.hash_key_attr]
        except (KeyError, TypeError):
            return
        if sizing.value_size(h) > sizing.MAX_HASH_KEY:
            raise Refused("ValidationException", HASH_KEY_MSG)
        if table.range_key_attr and table.range_key_attr in attrs:
            if sizing.value_size(attrs[table.range_key_attr]) > sizing.MAX_RANGE_KEY:
                raise Refused("ValidationException", RANGE_KEY_MSG)

    def check_item(self, item):
        if sizing.item_size(item) > sizing.MAX_ITEM:
            raise Refused("ValidationException", ITEM_SIZE_MSG)

    def throttle_refusal(self, refused_key, batch=False):
        kind, table, index, pk = refused_key
        self.meter.throttle(table, pk, index)
        if batch:
            return Refused("ProvisionedThroughputExceededException", THROTTLE_MSG)
        return Refused("ThrottlingException", THROTTLE_GSI_MSG if index else THROTTLE_MSG)

    @staticmethod
    def wants(kind, table, units, per_index, pk):
        w = [(kind, table.name, None, pk, units)]
        w += [(kind, table.name, n, ipk, u) for n, (u, _, ipk) in per_index.items()]
        return w

    def record(self, op, table, pk, units, per_index, kind):
        if kind == "r":
            self.meter.add(op, table.name, pk, rcu=units)
            for n, (u, _, ipk) in per_index.items():
                self.meter.add(op, table.name, ipk, rcu=u, index=n)
        else:
            self.meter.add(op, table.name, pk, wcu=units)
            for n, (u, _, ipk) in per_index.items():
                self.meter.add(op, table.name, ipk, wcu=u, index=n)

    # --- reads ---------------------------------------------------------------------------------
    def op_GetItem(self, environ, req, raw):
        t = self.table(environ, req.get("TableName"))
        if t is None or not isinstance(req.get("Key"), dict):
            return self.forward(environ, raw)
        self.check_key(t, req["Key"])
        mode = "strong" if req.get("ConsistentRead") else "eventual"
        try:
            pk = value_text(req["Key"][t.hash_key_attr])
        except (KeyError, ValueError):
            return self.forward(environ, raw)
        size = sizing.item_size(item_json(patches.stored_item(t, req["Key"])))
        units = sizing.read_units(size, mode)
        ok, refused = self.buckets.take([("r", t.name, None, pk, units)])
        if not ok:
            raise self.throttle_refusal(refused)
        status, headers, _, parsed, err = self.call(environ, req, raw)
        if err:
            self.buckets.give([("r", t.name, None, pk, units)])
            units = 0.0
        else:
            self.record("GetItem", t, pk, units, {}, "r")
        return self.respond(status, headers, parsed, consumed(t.name, units, {}, "r", req.get("ReturnConsumedCapacity")),
                            req.get("ReturnConsumedCapacity"))

    def _read_many(self, op, environ, req, raw):
        t = self.table(environ, req.get("TableName"))
        if t is None:
            return self.forward(environ, raw)
        index = req.get("IndexName")
        mode = "strong" if req.get("ConsistentRead") else "eventual"
        # A start key is a key: DynamoDB refuses one over the key sizes, as in a GetItem.
        self.check_key(t, req.get("ExclusiveStartKey") or {})
        patches.forget_query_hash()
        with patches.capture_reads() as read:
            status, headers, _, parsed, err = self.call(environ, req, raw)
            pk = patches.last_query_hash()
        if err:
            return self.respond(status, headers, parsed, None, None)
        idx = next((i for i in indexes(t) if i[0] == index), None) if index else None
        sizes = [sizing.item_size(index_entry(t, idx, item_json(i)) if idx else item_json(i)) for i in read]
        units = sizing.query_read_units(sizes, mode)
        if op == "Query":
            pk = value_text(pk.to_json()) if pk is not None else "?"
            ok, refused = self.buckets.take([("r", t.name, index, pk, units)])
            if not ok:  # a read changes nothing: its answer is dropped
                raise self.throttle_refusal(refused)
        else:
            pk = "(scan)"
        if index:
            self.meter.add(op, t.name, pk, rcu=units, index=index)
            per_index = {index: (units, idx[1] if idx else True, pk)}
            cc = consumed(t.name, 0.0, per_index, "r", req.get("ReturnConsumedCapacity"))
        else:
            self.meter.add(op, t.name, pk, rcu=units)
            cc = consumed(t.name, units, {}, "r", req.get("ReturnConsumedCapacity"))
        return self.respond(status, headers, parsed, cc, req.get("ReturnConsumedCapacity"))

    def op_Query(self, environ, req, raw):
        return self._read_many("Query", environ, req, raw)

    def op_Scan(self, environ, req, raw):
        return self._read_many("Scan", environ, req, raw)

    def op_BatchGetItem(self, environ, req, raw):
        ri = req.get("RequestItems")
        if not isinstance(ri, dict):
            return self.forward(environ, raw)
        total = sum(len(v.get("Keys") or []) for v in ri.values())
        if total > 100:
            return self.forward(environ, raw)  # moto answers AWS's two messages
        plan, unprocessed, any_throttled = [], {}, None
        keep = {}
        for name, spec in ri.items():
            t = self.table(environ, name)
            if t is None:
                return self.forward(environ, raw)
            mode = "strong" if spec.get("ConsistentRead") else "eventual"
            for key in spec.get("Keys") or []:
                self.check_key(t, key)
                pk = value_text(key[t.hash_key_attr])
                units = sizing.read_units(sizing.item_size(item_json(patches.stored_item(t, key))), mode)
                ok, refused = self.buckets.take([("r", t.name, None, pk, units)])
                if not ok:
                    any_throttled = refused
                    self.meter.throttle(t.name, pk)
                    u = unprocessed.setdefault(name, {k: v for k, v in spec.items() if k != "Keys"})
                    u.setdefault("Keys", []).append(key)
                    continue
                plan.append((t, pk, units))
                keep.setdefault(name, dict(spec, Keys=[]))["Keys"].append(key)
        if not plan:
            if any_throttled:
                raise Refused("ProvisionedThroughputExceededException", THROTTLE_MSG)
            return self.forward(environ, raw)
        status, headers, _, parsed, err = self.call(environ, dict(req, RequestItems=keep))
        if err:
            self.buckets.give([("r", t.name, None, pk, u) for t, pk, u in plan])
            return self.respond(status, headers, parsed, None, None)
        per_table = {}
        for t, pk, units in plan:
            self.meter.add("BatchGetItem", t.name, pk, rcu=units)
            per_table[t.name] = per_table.get(t.name, 0.0) + units
        if unprocessed:
            merged = parsed.setdefault("UnprocessedKeys", {})
            for name, spec in unprocessed.items():
                if name in merged:
                    merged[name]["Keys"].extend(spec["Keys"])
                else:
                    merged[name] = spec
        rcc = req.get("ReturnConsumedCapacity")
        cc = [consumed(n, u, {}, "r", rcc) for n, u in per_table.items()]
        return self.respond(status, headers, parsed, cc, rcc)

    def op_TransactGetItems(self, environ, req, raw):
        items = req.get("TransactItems") or []
        plan = []
        for entry in items:
            g = entry.get("Get") or {}
            t = self.table(environ, g.get("TableName"))
            if t is None or not isinstance(g.get("Key"), dict):
                return self.forward(environ, raw)
            self.check_key(t, g["Key"])
            plan.append((t, g["Key"], iid(t, g["Key"])))
        busy = [i for i, (_, _, ident) in enumerate(plan) if self.holds.held(ident)]
        if busy:
            raise self.cancelled(len(plan), busy, "TransactionConflict", CONFLICT_MSG)
        costs = []
        for t, key, _ in plan:
            pk = value_text(key[t.hash_key_attr])
            size = sizing.item_size(item_json(patches.stored_item(t, key)))
            costs.append((t, pk, sizing.read_units(size, "transactional")))
        ok, refused = self.buckets.take([("r", t.name, None, pk, u) for t, pk, u in costs])
        if not ok:
            self.meter.throttle(refused[1], refused[3])
            busy = [i for i, (t, pk, _) in enumerate(costs) if (t.name, pk) == (refused[1], refused[3])]
            raise self.cancelled(len(plan), busy, "ThrottlingError", THROTTLE_MSG)
        status, headers, _, parsed, err = self.call(environ, req, raw)
        if err:
            self.buckets.give([("r", t.name, None, pk, u) for t, pk, u in costs])
            return self.respond(status, headers, parsed, None, None)
        per_table = {}
        for t, pk, u in costs:
            self.meter.add("TransactGetItems", t.name, pk, rcu=u)
            per_table[t.name] = per_table.get(t.name, 0.0) + u
        rcc = req.get("ReturnConsumedCapacity")
        return self.respond(status, headers, parsed, [consumed(n, u, {}, "r", rcc) for n, u in per_table.items()], rcc)

    # --- writes --------------------------------------------------------------------------------
    def _single_write(self, op, environ, req, raw):
        t = self.table(environ, req.get("TableName"))
        attrs = req.get("Item") if op == "PutItem" else req.get("Key")
        if t is None or not isinstance(attrs, dict):
            return self.forward(environ, raw)
        self.check_key(t, attrs)
        if op == "PutItem":
            self.check_item(attrs)
        try:
            key = key_of(t, attrs)
            pk = value_text(key[t.hash_key_attr])
        except (KeyError, ValueError):
            return self.forward(environ, raw)
        ident = iid(t, key)
        rcc = req.get("ReturnConsumedCapacity")
        with self.stripes.hold([ident]):
            if self.holds.held(ident):
                raise Refused("TransactionConflictException", CONFLICT_MSG)
            old = item_json(patches.stored_item(t, key))
            if op == "PutItem":
                guess = attrs
            elif op == "UpdateItem":
                guess = dict(old or key)
                for n, v in (req.get("ExpressionAttributeValues") or {}).items():
                    guess["\0" + n] = v
            else:
                guess = None
            est, est_idx = write_cost(t, old, guess)
            ok, refused = self.buckets.take(self.wants("w", t, est, est_idx, pk))
            if not ok:
                raise self.throttle_refusal(refused)
            status, headers, _, parsed, err = self.call(environ, req, raw)
            new = item_json(patches.stored_item(t, key))
        if not err:
            units, per_index = write_cost(t, old, new)
        elif err == "ConditionalCheckFailedException":
            # A write whose condition fails still consumes write units (no index write).
            units, per_index = sizing.write_units(max(sizing.item_size(old), sizing.item_size(guess if op == "PutItem" else None))), {}
        else:
            units, per_index = 0.0, {}
        self.buckets.give(self.wants("w", t, est, est_idx, pk))
        self.buckets.give([(k, tb, ix, p, -u) for k, tb, ix, p, u in self.wants("w", t, units, per_index, pk)])
        self.record(op, t, pk, units, per_index, "w")
        if err and err != "ConditionalCheckFailedException":
            return self.respond(status, headers, parsed, None, None)
        return self.respond(status, headers, parsed, consumed(t.name, units, per_index, "w", rcc), rcc)

    def op_PutItem(self, environ, req, raw):
        return self._single_write("PutItem", environ, req, raw)

    def op_UpdateItem(self, environ, req, raw):
        return self._single_write("UpdateItem", environ, req, raw)

    def op_DeleteItem(self, environ, req, raw):
        return self._single_write("DeleteItem", environ, req, raw)

    def op_BatchWriteItem(self, environ, req, raw):
        ri = req.get("RequestItems")
        if not isinstance(ri, dict):
            return self.forward(environ, raw)
        count = sum(len(v) for v in ri.values() if isinstance(v, list))
        if count > 25 or any(isinstance(v, list) and not v for v in ri.values()):
            shown = ", ".join(f"{n}=[{len(v)} write requests]" for n, v in ri.items())
            raise Refused("ValidationException", BATCH_WRITE_MSG.format(shown))
        if len(raw) > 16 * MB:
            raise Refused("ValidationException", BATCH_SIZE_MSG)
        entries = []
        for name, writes in ri.items():
            t = self.table(environ, name)
            if t is None:
                return self.forward(environ, raw)
            for w in writes:
                kind, body = next(iter(w.items()))
                attrs = body.get("Item") if kind == "PutRequest" else body.get("Key")
                if not isinstance(attrs, dict):
                    return self.forward(environ, raw)
                self.check_key(t, attrs)
                if kind == "PutRequest":
                    self.check_item(attrs)
                try:
                    key = key_of(t, attrs)
                except KeyError:
                    return self.forward(environ, raw)
                entries.append((name, t, w, kind, attrs, key, iid(t, key)))
        rcc = req.get("ReturnConsumedCapacity")
        with self.stripes.hold([e[6] for e in entries]):
            todo, unprocessed, throttled = [], {}, False
            for name, t, w, kind, attrs, key, ident in entries:
                pk = value_text(key[t.hash_key_attr])
                if self.holds.held(ident):  # a transaction holds it: not processed (retry it)
                    unprocessed.setdefault(name, []).append(w)
                    self.meter.conflict()
                    continue
                old = item_json(patches.stored_item(t, key))
                est, est_idx = write_cost(t, old, attrs if kind == "PutRequest" else None)
                ok, refused = self.buckets.take(self.wants("w", t, est, est_idx, pk))
                if not ok:
                    throttled = True
                    self.meter.throttle(refused[1], refused[3], refused[2])
                    unprocessed.setdefault(name, []).append(w)
                    continue
                todo.append((name, t, w, key, pk, old, est, est_idx))
            if not todo:
                if throttled:
                    raise Refused("ProvisionedThroughputExceededException", THROTTLE_MSG)
                parsed = {"UnprocessedItems": unprocessed}
                return self.respond("200 OK", [("Content-Type", "application/x-amz-json-1.0")], parsed, [], rcc)
            keep = {}
            for name, t, w, *_ in todo:
                keep.setdefault(name, []).append(w)
            status, headers, _, parsed, err = self.call(environ, dict(req, RequestItems=keep))
            news = [item_json(patches.stored_item(t, key)) for _, t, _, key, *_ in todo]
        per_table = {}
        for (name, t, w, key, pk, old, est, est_idx), new in zip(todo, news):
            self.buckets.give(self.wants("w", t, est, est_idx, pk))
            if err:
                continue
            units, per_index = write_cost(t, old, new)
            self.buckets.give([(k, tb, ix, p, -u) for k, tb, ix, p, u in self.wants("w", t, units, per_index, pk)])
            self.record("BatchWriteItem", t, pk, units, per_index, "w")
            add_up(per_table, name, units, per_index)
        if err:
            return self.respond(status, headers, parsed, None, None)
        if unprocessed:
            merged = parsed.setdefault("UnprocessedItems", {})
            for name, ws in unprocessed.items():
                merged.setdefault(name, []).extend(ws)
        cc = [consumed(n, u, ix, "w", rcc) for n, (u, ix) in per_table.items()]
        return self.respond(status, headers, parsed, cc, rcc)

    @staticmethod
    def cancelled(n, busy, code, message):
        reasons = [{"Code": code, "Message": message} if i in busy else {"Code": "None"} for i in range(n)]
        codes = ", ".join(r["Code"] for r in reasons)
        return Refused("TransactionCanceledException",
                       f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                       {"CancellationReasons": reasons}, message_key="Message")

    def op_TransactWriteItems(self, environ, req, raw):
        items = req.get("TransactItems")
        if not isinstance(items, list):
            return self.forward(environ, raw)
        if len(items) > 100:
            shown = ", ".join("com.amazonaws.dynamodb.v20120810.TransactWriteItem" for _ in items)
            raise Refused("ValidationException", TXN_COUNT_MSG.format(shown))
        if len(raw) > 4 * MB:
            raise Refused("ValidationException", TXN_SIZE_MSG)
        plan = []
        for entry in items:
            kind, op = next(iter(entry.items()))
            t = self.table(environ, op.get("TableName"))
            attrs = op.get("Item") if kind == "Put" else op.get("Key")
            if t is None or not isinstance(attrs, dict):
                return self.forward(environ, raw)
            self.check_key(t, attrs)
            if kind == "Put":
                self.check_item(attrs)
            try:
                key = key_of(t, attrs)
            except KeyError:
                return self.forward(environ, raw)
            plan.append((kind, op, t, key, iid(t, key), value_text(key[t.hash_key_attr])))
        idents = [p[4] for p in plan]
        if len(set(idents)) != len(idents):
            raise Refused("ValidationException", TXN_SAME_ITEM_MSG)
        busy = self.holds.try_hold(idents)
        if busy:
            raise self.cancelled(len(plan), busy, "TransactionConflict", CONFLICT_MSG)
        rcc = req.get("ReturnConsumedCapacity")
        try:
            olds = [item_json(patches.stored_item(t, key)) for _, _, t, key, _, _ in plan]
            ests = []
            for (kind, op, t, key, _, pk), old in zip(plan, olds):
                guess = op.get("Item") if kind == "Put" else (None if kind == "Delete" else old)
                ests.append(write_cost(t, old, guess, transactional=True))
            want = []
            for (_, _, t, _, _, pk), (u, ix) in zip(plan, ests):
                want += self.wants("w", t, u, ix, pk)
            ok, refused = self.buckets.take(want)
            if not ok:
                self.meter.throttle(refused[1], refused[3], refused[2])
                busy = [i for i, p in enumerate(plan) if (p[2].name, p[5]) == (refused[1], refused[3])]
                raise self.cancelled(len(plan), busy, "ThrottlingError", THROTTLE_MSG)
            if self.txn_s > 0:
                time.sleep(self.txn_s)  # the commit time, items held
            with self.stripes.hold(idents):
                olds = [item_json(patches.stored_item(t, key)) for _, _, t, key, _, _ in plan]
                status, headers, _, parsed, err = self.call(environ, req, raw)
                news = [item_json(patches.stored_item(t, key)) for _, _, t, key, _, _ in plan]
        finally:
            self.holds.release(idents)
        self.buckets.give(want)
        if err and err != "TransactionCanceledException":
            return self.respond(status, headers, parsed, None, None)
        per_table = {}
        for (kind, op, t, key, _, pk), old, new in zip(plan, olds, news):
            if err:  # cancelled by a condition: every item still read its unit(s)
                units, per_index = sizing.write_units(sizing.item_size(old), True), {}
            elif kind == "ConditionCheck":
                units, per_index = sizing.write_units(sizing.item_size(old), True), {}
            else:
                units, per_index = write_cost(t, old, new, transactional=True)
            self.buckets.give([(k, tb, ix, p, -u) for k, tb, ix, p, u in self.wants("w", t, units, per_index, pk)])
            self.record("TransactWriteItems", t, pk, units, per_index, "w")
            add_up(per_table, t.name, units, per_index)
        cc = [consumed(n, u, ix, "w", rcc) for n, (u, ix) in per_table.items()]
        if err:
            return self.respond(status, headers, parsed, None, None)
        return self.respond(status, headers, parsed, cc, rcc)


def make_app():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    return LocalDynamo(app)


def main(argv=None):
    import logging
    import signal

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # One access-log line per request cost ~7 % of the server's time; errors still print.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple(args.host, args.port, make_app(), threaded=True, request_handler=MotoRequestHandler)
