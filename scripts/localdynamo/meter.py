"""The capacity meter behind GET /_meter: units per table, per operation, per partition key."""
import threading
import time


class Meter:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "_lock", threading.Lock()):
            self.started = time.time()
            self.tables = {}
            self.operations = {}
            self.keys = {}
            self.throttled = 0
            self.conflicts = 0

    def request(self, op):
        with self._lock:
            o = self.operations.setdefault(op, {"requests": 0, "rcu": 0.0, "wcu": 0.0})
            o["requests"] += 1

    def add(self, op, table, pk, rcu=0.0, wcu=0.0, index=None, now=None):
        """Units consumed by `op` on one partition key of a table (or of one of its indexes)."""
        if not rcu and not wcu:
            return
        now = time.time() if now is None else now
        second = int(now)
        with self._lock:
            t = self.tables.setdefault(table, {"rcu": 0.0, "wcu": 0.0})
            t["rcu"] += rcu
            t["wcu"] += wcu
            o = self.operations.setdefault(op, {"requests": 0, "rcu": 0.0, "wcu": 0.0})
            o["rcu"] += rcu
            o["wcu"] += wcu
            k = self._key(table, index, pk)
            if k["second"] != second:
                k["second"], k["rcu_this_s"], k["wcu_this_s"] = second, 0.0, 0.0
            k["rcu"] += rcu
            k["wcu"] += wcu
            k["requests"] += 1
            k["rcu_this_s"] += rcu
            k["wcu_this_s"] += wcu
            k["peak_rcu_per_s"] = max(k["peak_rcu_per_s"], k["rcu_this_s"])
            k["peak_wcu_per_s"] = max(k["peak_wcu_per_s"], k["wcu_this_s"])

    def _key(self, table, index, pk):
        k = self.keys.get((table, index, pk))
        if k is None:
            k = self.keys[(table, index, pk)] = {
                "table": table, "index": index, "pk": pk, "rcu": 0.0, "wcu": 0.0,
                "peak_rcu_per_s": 0.0, "peak_wcu_per_s": 0.0, "second": 0,
                "rcu_this_s": 0.0, "wcu_this_s": 0.0, "requests": 0, "throttled": 0,
            }
        return k

    def throttle(self, table, pk, index=None):
        with self._lock:
            self.throttled += 1
            k = self._key(table, index, pk)
            k["throttled"] += 1

    def conflict(self):
        with self._lock:
            self.conflicts += 1

    def snapshot(self, scale=1.0, limit=100):
        with self._lock:
            keys = sorted(self.keys.values(), key=lambda k: (-(k["rcu"] + k["wcu"]), -k["throttled"]))
            return {
                "since": self.started,
                "seconds": round(time.time() - self.started, 3),
                "scale": scale,
                "tables": {n: dict(v) for n, v in self.tables.items()},
                "operations": {n: dict(v) for n, v in self.operations.items()},
                "throttled": self.throttled,
                "conflicts": self.conflicts,
                "keys": [
                    {f: k[f] for f in ("table", "index", "pk", "rcu", "wcu", "peak_rcu_per_s",
                                       "peak_wcu_per_s", "requests", "throttled")}
                    for k in keys[:limit]
                ],
            }


class Buckets:
    """Token buckets per (table, index, partition key value): DynamoDB's per-partition ceiling.

    rate: units per second (1,000 WCU, 3,000 RCU); capacity: rate x burst seconds. A request is
    let through when the bucket holds its units, or, for a request larger than the whole bucket,
    when the bucket is full; the bucket may then go below zero (a debt refilled at the rate)."""

    def __init__(self, wcu_rate=1000.0, rcu_rate=3000.0, burst_s=1.0, scale=1.0):
        self.rates = {"r": rcu_rate, "w": wcu_rate}
        self.burst_s = burst_s
        self.scale = scale
        self._lock = threading.Lock()
        self._b = {}

    def reset(self):
        with self._lock:
            self._b = {}

    def _level(self, key, now):
        rate = self.rates[key[0]]
        cap = rate * self.burst_s
        tokens, last = self._b.get(key, (cap, now))
        return min(cap, tokens + (now - last) * rate), cap

    def take(self, wants, now=None):
        """wants: [(kind 'r'|'w', table, index, pk, units)]. All or nothing: True and consumed,
        or False and nothing consumed (the first key that refused is returned as second value)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            need = {}
            for kind, table, index, pk, units in wants:
                k = (kind, table, index, pk)
                need[k] = need.get(k, 0.0) + units * self.scale
            levels = {}
            for k, units in need.items():
                tokens, cap = self._level(k, now)
                if tokens < min(units, cap) or tokens <= 0:
                    return False, k
                levels[k] = tokens
            for k, units in need.items():
                self._b[k] = (levels[k] - units, now)
            return True, None

    def give(self, gives, now=None):
        """Adjust after the fact (the real units differ from the estimate): positive = refund."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for kind, table, index, pk, units in gives:
                k = (kind, table, index, pk)
                tokens, cap = self._level(k, now)
                self._b[k] = (min(cap, tokens + units * self.scale), now)
