#!/usr/bin/env python3
"""`make dev`'s front door: one line per request (time, method, path, status, milliseconds) on
stdout, everything forwarded to `cargo lambda watch` behind it (whose own output goes to
DEV_DIR/functions.log). Usage: dev_proxy.py LISTEN_PORT UPSTREAM_PORT. Standard library only."""
import http.client
import http.server
import sys
import threading
import time

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_local = threading.local()


def upstream(port, fresh=False):
    conn = getattr(_local, "conn", None)
    if conn is None or fresh:
        conn = _local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    return conn


def emulator_error(status, headers):
    """A 5xx that is not a function's own JSON answer."""
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    return status >= 500 and "json" not in content_type


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0

    def log_message(self, *args):
        pass

    def relay(self):
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        status, data, out_headers = 502, b"", []
        retried = False
        for attempt in range(3):
            try:
                conn = upstream(self.upstream_port, fresh=attempt > 0)
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
                out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP | {"content-length"}]
            except (http.client.HTTPException, OSError):
                _local.conn = None
                data = b'{"error": "the functions (cargo lambda watch) did not answer"}'
                continue
            # The emulator itself (not a function: its problem JSON as text/plain, and the
            # function logged nothing) answers 500 to about one in a hundred concurrent reads
            # of a ~20 KB response; the same read never fails alone, nor a small one under the
            # same load (docs/DECISIONS.md). API Gateway has no such failure, so a read it hit
            # is sent again, once, and the log says so. Writes are never resent.
            if emulator_error(status, out_headers) and self.command in ("GET", "HEAD") and not retried:
                retried = True
                continue
            break
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        ms = (time.perf_counter() - started) * 1000
        line = f"{time.strftime('%H:%M:%S')} {self.command:6} {self.path.split('?')[0]} {status} {ms:.0f} ms"
        # A 5xx that is not the functions' own JSON comes from the emulator itself: keep what
        # it said, since the function logged nothing for it.
        content_type = next((v for k, v in out_headers if k.lower() == "content-type"), "")
        if emulator_error(status, out_headers):
            line += f"  [not from a function: {content_type or 'no content type'}] {data[:300]!r}"
        if retried:
            line += "  (sent twice: the emulator answered 500 the first time)"
        print(line, flush=True)

    def __getattr__(self, name):
        # Every method goes through, TRACE and others included: the functions answer what they
        # do not serve (405 with Allow), not this proxy (http.server's 501 page).
        if name.startswith("do_"):
            return self.relay
        raise AttributeError(name)


class Server(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening many connections at once
    # (a load or schema-fuzzing tool's workers) saw its connects dropped: timeouts and resets.
    request_queue_size = 1024
    daemon_threads = True


def main():
    listen, up = int(sys.argv[1]), int(sys.argv[2])
    Proxy.upstream_port = up
    Server(("127.0.0.1", listen), Proxy).serve_forever()


if __name__ == "__main__":
    main()
