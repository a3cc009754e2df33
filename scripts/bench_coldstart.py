#!/usr/bin/env python3
"""Cold start of each function binary against a local Lambda Runtime API, next to the floor of
the Python alternative. Run through `make bench-coldstart` (scripts/bench-coldstart.sh), which
builds the release binaries and starts a throwaway local DynamoDB-compatible server (moto).

What is measured, per start (median and p90 of N starts, one discarded warm-up start first):
- ours: wall time from just before spawning the binary (time.perf_counter) to the moment its
  response POST to the emulated Runtime API has arrived, and its peak RSS (VmHWM in
  /proc/<pid>/status, read right after that response and before the process is killed);
- the Python floor: `python3 -c "import boto3; boto3.client('dynamodb', region_name='us-east-1')"`
  with the venv's python (boto3 installed there), from spawn to exit, and its peak RSS
  (ru_maxrss from os.wait4). It serves no request at all, so it is a lower bound of any
  boto3-based function's cold start.
Runs are interleaved (Python, then each binary, in turn) so that background load hits both.

The first request of each binary, in two scenarios:
- `local` (the one the targets are judged on): no DynamoDB call.
  token: GET /.well-known/openid-configuration (200); user-data: GET /public/v1/user/{userId},
  segments: GET /public/v1/user/system/{systemGuid}/segment, integrations:
  GET /public/v1/integrations, each without Authorization (401). This measures process start,
  the runtime, the SDK config and DynamoDB client set-up (the same work as the Python floor),
  the first /next, event parsing, routing, the auth check and the response.
- `ddb`: the same, plus the first DynamoDB round trip (client connection, SigV4 signing):
  token: GET /.well-known/jwks.json (one Query of the config table, 200 with no keys); the
  others send a well-formed RS256 at+jwt whose kid is unknown, so the authenticator reads the
  public keys from DynamoDB before refusing it (two Queries: the first load, then the one
  re-read an unknown kid allows; 401, where a 503 would mean the reads failed). Its
  time includes the emulator's (moto's) latency, which real DynamoDB does not share.

Targets (the issue): ours <= 1/15 of the floor's wall time, <= 1/2 of its peak memory.
Machine-readable lines: coldstart_<fn>_ms=... (fn with '-' as '_'; see the end of main()).
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ["token", "user-data", "segments", "integrations"]
PYTHON_FLOOR = "import boto3; boto3.client('dynamodb', region_name='us-east-1')"
WALL_TARGET = 15.0  # python_ms / ours_ms must be at least this
MEM_TARGET = 0.5  # ours_mb / python_mb must be at most this
TABLES = {  # the default names `admin tables create` uses (shared/store/src/schema.rs)
    "CONFIG_TABLE": "ingest-config",
    "KEYS_TABLE": "ingest-signing-keys",
    "END_USERS_TABLE": "ingest-end-users",
    "SEGMENTS_TABLE": "ingest-segments",
}
SYSTEM_GUID = "7f3c1e52-9a4b-4c1d-8e2f-0b6a5d4c3e21"  # any well-formed system GUID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Passes every header check (alg RS256, typ at+jwt, a kid) but names no published key.
FORGED_JWT = ".".join([
    b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "coldstart-bench-unknown"}).encode()),
    b64url(json.dumps({"sub": "bench", "exp": 4102444800}).encode()),
    b64url(b"not-a-signature"),
])


def event(name: str, authorization: str | None) -> dict:
    ev = json.loads((ROOT / "events" / name).read_text().replace("__SYSTEM_GUID__", SYSTEM_GUID))
    ev["headers"].pop("authorization", None)
    if authorization is not None:
        ev["headers"]["authorization"] = authorization
    return ev


# (function, scenario) -> (event, expected statusCode, what it is)
def requests() -> dict:
    bearer = f"Bearer {FORGED_JWT}"
    return {
        ("token", "local"): (event("openid-configuration.json", None), 200,
                             "GET /.well-known/openid-configuration"),
        ("token", "ddb"): (event("jwks.json", None), 200, "GET /.well-known/jwks.json (1 Query)"),
        ("user-data", "local"): (event("user-get.json", None), 401, "GET /public/v1/user/{id}, no auth"),
        ("user-data", "ddb"): (event("user-get.json", bearer), 401,
                               "GET /public/v1/user/{id}, unknown-kid JWT (2 Queries)"),
        ("segments", "local"): (event("segments-list.json", None), 401, "GET .../segment, no auth"),
        ("segments", "ddb"): (event("segments-list.json", bearer), 401, "GET .../segment, unknown-kid JWT (2 Queries)"),
        ("integrations", "local"): (event("integrations-list.json", None), 401,
                                    "GET /public/v1/integrations, no auth"),
        ("integrations", "ddb"): (event("integrations-list.json", bearer), 401,
                                  "GET /public/v1/integrations, unknown-kid JWT (2 Queries)"),
    }


# ---------------------------------------------------------------- Lambda Runtime API emulator

class Invocation:
    """One start of one binary: the event it gets and what it posted back."""

    def __init__(self, function: str, payload: bytes):
        self.function = function
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.lock = threading.Lock()
        self.handed_out = False
        self.t_next = None  # first GET /next: the function's init is done
        self.t_done = None  # its response (or error) has fully arrived
        self.kind = None  # "response" | "error" | "init/error"
        self.body = b""
        self.done = threading.Event()
        self.released = threading.Event()  # the process is gone: hung /next calls may return


class RuntimeApi(ThreadingHTTPServer):
    """The Runtime API of one start: it serves `current` and nothing else."""
    daemon_threads = True
    current: Invocation | None = None

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the connection of a process just killed
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real Runtime API
    server: RuntimeApi

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        inv = self.server.current
        if self.path != "/2018-06-01/runtime/invocation/next" or inv is None:
            return self._reply(404, b'{"errorMessage":"not found"}')
        with inv.lock:
            first = not inv.handed_out
            inv.handed_out = True
            if first:
                inv.t_next = time.perf_counter()
        if not first:
            # One invocation per start: hang, as Lambda does between invocations, until killed.
            inv.released.wait(120)
            self.close_connection = True
            return
        arn = f"arn:aws:lambda:us-east-1:123456789012:function:{inv.function}"
        self._reply(200, inv.payload, {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
            "Lambda-Runtime-Invoked-Function-Arn": arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                                       f"Parent={uuid.uuid4().hex[:16]};Sampled=0",
        })

    def do_POST(self):
        body = self._read_body()
        t = time.perf_counter()
        inv = self.server.current
        prefix = "/2018-06-01/runtime/"
        kind = None
        if self.path == prefix + "init/error":
            kind = "init/error"
        elif inv is not None and self.path == f"{prefix}invocation/{inv.request_id}/response":
            kind = "response"
        elif inv is not None and self.path == f"{prefix}invocation/{inv.request_id}/error":
            kind = "error"
        if kind is None or inv is None:
            return self._reply(404, b'{"errorMessage":"unknown request id"}')
        if not inv.done.is_set():
            inv.t_done, inv.kind, inv.body = t, kind, body
            inv.done.set()
        self._reply(202, b'{"status":"OK"}')


# ---------------------------------------------------------------- measurements

def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def start_binary(binary: Path, function: str, env: dict, payload: bytes, log, timeout: float) -> dict:
    # A Runtime API of its own per start: a killed process's last /next, still in flight, can
    # then never take the next start's event.
    inv = Invocation(function, payload)
    server = RuntimeApi(("127.0.0.1", 0), Handler)
    server.current = inv
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        while not inv.done.wait(0.02):
            if proc.poll() is not None:
                raise RuntimeError(f"{function} exited with {proc.returncode} before responding; see {log.name}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{function} did not respond within {timeout}s; see {log.name}")
        hwm = vm_hwm_kb(proc.pid)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        inv.released.set()
        server.shutdown()
        server.server_close()
    if inv.kind != "response":
        raise RuntimeError(f"{function} posted {inv.kind}: {inv.body[:500]!r}")
    status = json.loads(inv.body).get("statusCode")
    return {"ms": (inv.t_done - t0) * 1000, "init_ms": (inv.t_next - t0) * 1000, "kb": hwm, "status": status}


def start_python(python: str, env: dict, log) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", PYTHON_FLOOR], env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    _, wstatus, usage = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    if proc.returncode != 0:
        raise RuntimeError(f"the Python floor exited with {proc.returncode}; see {log.name}")
    return {"ms": (t1 - t0) * 1000, "kb": usage.ru_maxrss}


def p90(xs: list) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8] if len(xs) > 1 else xs[0]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--runs", type=int, default=20, help="measured starts of each (default 20)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded starts first (default 1)")
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="interpreter with boto3 installed (default: the repo's .venv)")
    ap.add_argument("--functions", default=",".join(FUNCTIONS))
    ap.add_argument("--log-dir", default=str(ROOT / "target" / "bench-coldstart"))
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one start may take")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    if args.runs < 20:
        print(f"warning: --runs {args.runs} is below the 20 starts the issue asks for", file=sys.stderr)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    if not endpoint:
        print("error: AWS_ENDPOINT_URL_DYNAMODB is unset (run through scripts/bench-coldstart.sh)",
              file=sys.stderr)
        return 2
    functions = [f for f in args.functions.split(",") if f]
    bin_dir = Path(args.bin_dir)
    for fn in functions:
        if not (bin_dir / fn).is_file():
            print(f"error: {bin_dir / fn} is missing (cargo build --release -p {fn})", file=sys.stderr)
            return 2
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    reqs = {k: v for k, v in requests().items() if k[0] in functions}
    scenarios = ["local", "ddb"]

    # What Lambda gives a function (a clean environment, not this shell's), plus the local server.
    base = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
    }
    fn_env = {
        fn: {**base, **TABLES,
             "AWS_LAMBDA_FUNCTION_NAME": fn,
             "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
             "AWS_LAMBDA_LOG_FORMAT": "JSON", "RUST_LOG": "info",
             "TOKEN_AUDIENCE": "end-user-data-api", "TOKEN_TTL_SECONDS": "86400", "USAGE_FLUSH_SECONDS": "5"}
        for fn in functions
    }
    py_env = dict(base)  # credentials in the environment, as in Lambda: no credential-file or IMDS probing

    print(f"==> cold start: {args.runs} starts each after {args.warmup} discarded, interleaved; "
          f"a Runtime API emulator per start; DynamoDB: {endpoint}")
    print(f"    machine: {os.cpu_count()} CPUs; load average before: {loadavg()}")
    parent_hwm = vm_hwm_kb(os.getpid())
    ours = {k: [] for k in reqs}
    python = []
    logs = {fn: open(log_dir / f"{fn}.log", "w") for fn in functions}
    py_log = open(log_dir / "python-floor.log", "w")
    try:
        for i in range(args.warmup + args.runs):
            py = start_python(args.python, py_env, py_log)
            got = {}
            for (fn, sc), (ev, want, _) in reqs.items():
                r = start_binary(bin_dir / fn, fn, fn_env[fn], json.dumps(ev).encode(), logs[fn], args.timeout)
                if r["status"] != want:
                    raise RuntimeError(f"{fn} ({sc}) answered {r['status']}, expected {want}; see {logs[fn].name}")
                got[(fn, sc)] = r
            if i >= args.warmup:
                python.append(py)
                for k, r in got.items():
                    ours[k].append(r)
            print(f"    start {i + 1}/{args.warmup + args.runs}{' (warm-up)' if i < args.warmup else ''}: "
                  f"python {py['ms']:.0f} ms, " + ", ".join(f"{fn}/{sc} {r['ms']:.1f}" for (fn, sc), r in got.items()),
                  flush=True)
    finally:
        for f in [*logs.values(), py_log]:
            f.close()
    load_after = loadavg()

    py_ms = statistics.median(r["ms"] for r in python)
    py_p90 = p90([r["ms"] for r in python])
    py_mb = statistics.median(r["kb"] for r in python) / 1024
    # os.wait4's ru_maxrss also counts the spawning process's peak (it is the child's image
    # until exec), so it is the floor's own only when above this process's peak.
    if py_mb * 1024 <= parent_hwm * 1.05:
        print(f"warning: the Python floor's ru_maxrss ({py_mb:.1f} MB) is not above this bench's own "
              f"peak ({parent_hwm / 1024:.1f} MB): it may be the bench's, not the floor's", file=sys.stderr)

    print()
    print(f"==> results (median of {args.runs}; load average after: {load_after})")
    print(f"    {'function':<13} {'scenario':<6} {'first request':<58} {'status':>6} {'init_ms':>8} "
          f"{'median_ms':>9} {'p90_ms':>7} {'peak_mb':>7}   {'python/ours (>=15)':<19} {'ours/python mem (<=0.5)'}")
    machine = []
    failed = False
    for (fn, sc), (_, want, what) in reqs.items():
        rs = ours[(fn, sc)]
        ms = statistics.median(r["ms"] for r in rs)
        init = statistics.median(r["init_ms"] for r in rs)
        hi = p90([r["ms"] for r in rs])
        mb = statistics.median(r["kb"] for r in rs) / 1024
        wall_ratio, mem_ratio = py_ms / ms, mb / py_mb
        wall_ok, mem_ok = wall_ratio >= WALL_TARGET, mem_ratio <= MEM_TARGET
        if sc == "local":
            failed |= not (wall_ok and mem_ok)
        print(f"    {fn:<13} {sc:<6} {what:<58} {want:>6} {init:>8.1f} {ms:>9.1f} {hi:>7.1f} {mb:>7.1f}   "
              f"{wall_ratio:>6.1f}x {'PASS' if wall_ok else 'FAIL':<11} {mem_ratio:>6.3f} {'PASS' if mem_ok else 'FAIL'}")
        key = fn.replace("-", "_") + ("" if sc == "local" else "_ddb")
        machine += [f"coldstart_{key}_ms={ms:.2f}", f"coldstart_{key}_p90_ms={hi:.2f}",
                    f"coldstart_{key}_init_ms={init:.2f}", f"coldstart_{key}_mb={mb:.2f}",
                    f"coldstart_{key}_wall_ratio={wall_ratio:.2f}", f"coldstart_{key}_mem_ratio={mem_ratio:.3f}",
                    f"coldstart_{key}_pass={int(wall_ok and mem_ok)}"]
    print(f"    {'python floor':<13} {'':<6} {'import boto3; boto3.client(dynamodb)':<58} {'exit 0':>6} {'':>8} "
          f"{py_ms:>9.1f} {py_p90:>7.1f} {py_mb:>7.1f}")
    print(f"    targets: ours <= 1/{WALL_TARGET:.0f} of the floor's wall time and <= {MEM_TARGET} of its peak "
          f"memory, judged on the 'local' scenario; 'ddb' adds a DynamoDB round trip to moto")
    print(f"    logs: {log_dir}")
    print()
    print(*machine, sep="\n")
    print(f"coldstart_python_floor_ms={py_ms:.2f}")
    print(f"coldstart_python_floor_p90_ms={py_p90:.2f}")
    print(f"coldstart_python_floor_mb={py_mb:.2f}")
    print(f"coldstart_runs={args.runs}")
    print(f"coldstart_loadavg_after={load_after.replace(' ', ',')}")
    print(f"coldstart_pass={int(not failed)}")
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
