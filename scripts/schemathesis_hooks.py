"""schemathesis hooks for `make schemathesis` (scripts/schemathesis.sh).

The local stack's HTTP front (cargo lambda's emulator, which turns each request into an API
Gateway event) answers two kinds of request with its own `500` (text/plain) before any
function runs, which says nothing about the API:

- a header value with a character past ASCII: that character becomes a tab, which the
  emulator passes on and which is just as invalid for every header the API reads (an
  `Idempotency-Key` must be printable ASCII). The configuration's `exclude-header-characters`
  keeps them out of generated values; this catches the coverage phase's fixed invalid values;
- a body that is not valid UTF-8 (under a text content type such as JSON): its invalid bytes
  become U+FFFD, so the body stays malformed and still tests the API's `invalid_json` answers.
"""

import schemathesis


def _ascii(value: str) -> str:
    fixed = "".join(c if ord(c) < 0x80 else "\t" for c in value)
    # A value may not start or end with whitespace on the wire.
    return f"x{fixed}x" if fixed != fixed.strip() else fixed


@schemathesis.hook
def before_call(context, case, kwargs):
    for name, value in list((case.headers or {}).items()):
        if isinstance(value, str) and not value.isascii():
            case.headers[name] = _ascii(value)
    if isinstance(case.body, (bytes, bytearray)):
        try:
            bytes(case.body).decode("utf-8")
        except UnicodeDecodeError:
            case.body = bytes(case.body).decode("utf-8", errors="replace").encode("utf-8")
