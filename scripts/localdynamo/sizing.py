"""DynamoDB's published sizing and capacity-unit rules, on wire-format items.

Sources (Amazon DynamoDB Developer Guide):
- "DynamoDB item sizes and formats" (CapacityUnitCalculations.html): names + values per type.
- "DynamoDB read and write operations" (read-write-operations.html): 4 KB read units
  (strongly consistent 1, eventually consistent 1/2, transactional 2), 1 KB write units of the
  larger of the item before and after (transactional 2x), minimum one unit per item, Query and
  Scan add the sizes of the items read and round once, BatchGetItem rounds each item.
"""
import base64
import math

KB = 1024
READ_UNIT = 4 * KB
WRITE_UNIT = KB
MAX_ITEM = 400 * KB
MAX_HASH_KEY = 2048
MAX_RANGE_KEY = 1024


def number_size(text):
    """(1 byte per two significant digits) + 1 byte; leading and trailing zeroes trimmed.

    A negative number takes one more byte (the sign), as AWS's own calculator counts it."""
    s = text.strip().lower()
    negative = s.startswith("-")
    s = s.lstrip("+-")
    if "e" in s:
        s = s.split("e", 1)[0]
    digits = s.replace(".", "").lstrip("0").rstrip("0")
    if not digits:
        return 1  # zero
    return math.ceil(len(digits) / 2) + 1 + (1 if negative else 0)


def value_size(value):
    """Size of one attribute value (without its name) in wire format ({"S": "x"})."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(_raw(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode("utf-8")) for x in v)
    if kind == "NS":
        return sum(number_size(x) for x in v)
    if kind == "BS":
        return sum(len(_raw(x)) for x in v)
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + value_size(x) + 1 for k, x in v.items())
    return 0  # not a DynamoDB type: moto refuses the request itself


def _raw(v):
    if isinstance(v, (bytes, bytearray)):
        return v
    try:
        return base64.b64decode(v, validate=False)
    except Exception:
        return v.encode("utf-8")


def item_size(item):
    """Size of a whole item: the UTF-8 bytes of every attribute name plus its value."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())


def read_units(size, mode="strong"):
    """Read units for one read of `size` bytes: 4 KB units, at least one.

    mode: "strong" (1 per unit), "eventual" (1/2), "transactional" (2)."""
    units = max(1, math.ceil(size / READ_UNIT))
    return units * {"strong": 1.0, "eventual": 0.5, "transactional": 2.0}[mode]


def write_units(size, transactional=False):
    """Write units for one write whose larger item (before or after) is `size` bytes."""
    units = max(1, math.ceil(size / WRITE_UNIT))
    return float(units * (2 if transactional else 1))


def query_read_units(sizes, mode="strong"):
    """Query and Scan: the sizes of all items read are added up, then rounded once."""
    return read_units(sum(sizes), mode)


def batch_get_read_units(sizes, mode="eventual"):
    """BatchGetItem: each item rounded to 4 KB on its own (a missing item: the minimum)."""
    return sum(read_units(s, mode) for s in sizes)


def key_sizes(key_values):
    """Sizes of key values as the key limits count them (values only, no names)."""
    return [value_size(v) for v in key_values]
