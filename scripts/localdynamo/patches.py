"""What this server changes inside moto 5.2.5 (everything else is moto unchanged).

- TransactWriteItems: moto deep-copies the whole table once per action (to roll back) and rolls
  back by putting those copies back, which is O(table) and erases concurrent writes. Here the
  copies are skipped and the (at most 100) touched items are journaled and restored.
- Query on a table's own key reads only its partition (moto lists and sorts the whole table).
- Readers never see an item half-written: UpdateItem works on a private copy of the item
  (copy-on-write) that replaces the stored one in one dict assignment when the update succeeds,
  so a concurrent Query or GetItem sees the item before or after, never between (moto applies an
  update in steps: an `ADD` to a new item first stores the item with its key only). A failed
  update leaves nothing behind.
- Table walks (Scan, index queries) snapshot each dict before iterating it, so a concurrent
  insert cannot break them ("dictionary changed size during iteration"). Under the GIL,
  list(dict.values()) is one C call.
- Query and Scan report the items they read (before filters and projections) to the meter.
"""
import copy
import decimal
import threading
import types

from moto.dynamodb import models
from moto.dynamodb.exceptions import InvalidAttributeTypeError
from moto.dynamodb.models import table as table_module
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

_tl = threading.local()


# --- transactions: no table copies, journal of the touched items ---------------------------
def _deepcopy_no_tables(x, memo=None):
    return x if isinstance(x, Table) else copy.deepcopy(x, memo)


models.copy = types.SimpleNamespace(deepcopy=_deepcopy_no_tables, copy=copy.copy)
_original_transact = models.DynamoDBBackend.transact_write_items


def action_key(backend, op):
    table = backend.get_table(op["TableName"])
    if "Key" in op:
        return op["Key"]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(self, transact_items):
    # The caller (server.py) holds the stripes of every item of the transaction.
    journal = []
    for item in transact_items:
        try:
            _, op = next(iter(item.items()))
            key = action_key(self, op)
            before = stored_item(self.get_table(op["TableName"]), key)
            journal.append((op["TableName"], key, before.to_json()["Attributes"] if before else None))
        except Exception:  # malformed actions are moto's to report
            pass
    try:
        return _original_transact(self, transact_items)
    except Exception:
        for table_name, key, before in reversed(journal):
            if before is None:
                try:
                    self.delete_item(table_name, key)
                except Exception:
                    pass
            else:
                self.put_item(table_name, copy.deepcopy(before))
        raise


models.DynamoDBBackend.transact_write_items = _transact_write_items


# --- safe lookups ----------------------------------------------------------------------------
def stored_item(table, key):
    """The stored Item for a wire-format key, without inserting into moto's defaultdicts."""
    try:
        h = DynamoType(key[table.hash_key_attr])
        part = table.items.get(h)
        if part is None:
            return None
        if table.range_key_attr:
            return part.get(DynamoType(key[table.range_key_attr]))
        return part
    except Exception:
        return None


# --- snapshots of the table dicts ------------------------------------------------------------
def _snapshot_items(self):
    if self.range_key_attr:
        items = []
        for part in list(self.items.values()):
            items.extend(list(part.values()))
    else:
        items = list(self.items.values())
    return [i for i in items if isinstance(i, Item)]


def _all_items(self):
    hash_key = getattr(_tl, "partition", None)
    if hash_key is not None:
        found = self.items.get(hash_key)
        if found is None:
            return []
        return list(found.values()) if self.range_key_attr else [found]
    items = _snapshot_items(self)
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _has_idx_items(self, index_name):
    idx = self.get_index(index_name)
    cols = {i["AttributeName"] for i in idx.schema}
    return [i for i in _snapshot_items(self) if cols.issubset(set(i.attrs))]


_query = Table.query


def last_query_hash():
    """The partition key value (a DynamoType) of the last Query of this thread."""
    return getattr(_tl, "qhash", None)


def forget_query_hash():
    _tl.qhash = None


def _partition_query(self, hash_key, *args, **kwargs):
    _tl.qhash = hash_key
    # The index name is Table.query's 8th parameter (moto's backend passes it positionally).
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None:
        return _query(self, hash_key, *args, **kwargs)
    _tl.partition = hash_key
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _tl.partition = None


Table.all_items = _all_items
Table.has_idx_items = _has_idx_items
Table.query = _partition_query


# --- what Query and Scan read ------------------------------------------------------------------
def _capturing_deepcopy(x, memo=None):
    seen = getattr(_tl, "read", None)
    if seen is not None:
        if isinstance(x, Item):
            seen.append(x)
        elif isinstance(x, list) and all(isinstance(i, Item) for i in x):
            seen.extend(x)
    return copy.deepcopy(x, memo)


table_module.copy = types.SimpleNamespace(deepcopy=_capturing_deepcopy, copy=copy.copy)


class capture_reads:
    """with capture_reads() as read: ... -> read: the Items a Query/Scan read in this thread."""

    def __enter__(self):
        _tl.read = []
        return _tl.read

    def __exit__(self, *exc):
        _tl.read = None
        return False


# --- copy-on-write UpdateItem --------------------------------------------------------------------
_get_item = Table.get_item
_put_item = Table.put_item
_update_item = models.DynamoDBBackend.update_item


def _cow_get_item(self, hash_key, range_key=None, projection_expression=None):
    cow = getattr(_tl, "cow", None)
    if cow is None or projection_expression:
        return _get_item(self, hash_key, range_key, projection_expression)
    k = (id(self), hash_key, range_key)
    if k in cow:
        return cow[k][1]
    found = stored_item(self, _wire_key(self, hash_key, range_key))
    if found is None:
        return None
    clone = copy.deepcopy(found)
    cow[k] = (self, clone)
    return clone


def _cow_put_item(self, item_attrs, *args, **kwargs):
    cow = getattr(_tl, "cow", None)
    if cow is None:
        return _put_item(self, item_attrs, *args, **kwargs)
    # Only update_item's "create the new item with its key" path gets here.
    hash_value = DynamoType(item_attrs[self.hash_key_attr])
    range_value = DynamoType(item_attrs[self.range_key_attr]) if self.range_key_attr else None
    if hash_value.type != self.hash_key_type:
        raise InvalidAttributeTypeError(self.hash_key_attr, expected_type=self.hash_key_type,
                                        actual_type=hash_value.type)
    if range_value is not None and range_value.type != self.range_key_type:
        raise InvalidAttributeTypeError(self.range_key_attr, expected_type=self.range_key_type,
                                        actual_type=range_value.type)
    self._validate_item_types(item_attrs)
    self._validate_key_sizes(item_attrs)
    item = Item(hash_value, range_value, item_attrs)
    cow[(id(self), hash_value, range_value)] = (self, item)
    return item


def _wire_key(table, hash_key, range_key):
    key = {table.hash_key_attr: hash_key.to_json()}
    if table.range_key_attr and range_key is not None:
        key[table.range_key_attr] = range_key.to_json()
    return key


def _cow_update_item(self, *args, **kwargs):
    outer = getattr(_tl, "cow", None)
    if outer is not None:  # nested: already copy-on-write
        return _update_item(self, *args, **kwargs)
    _tl.cow = {}
    try:
        result = _update_item(self, *args, **kwargs)
        for (_, h, r), (table, item) in _tl.cow.items():
            if r is not None:
                table.items[h][r] = item
            else:
                table.items[h] = item
        return result
    finally:
        _tl.cow = None


Table.get_item = _cow_get_item
Table.put_item = _cow_put_item
models.DynamoDBBackend.update_item = _cow_update_item


# --- the item size limit: DynamoDB's 400 KB (409,600 bytes), not moto's 405,000 -----------------------
def _limited_setitem(self, key, value):
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.utilities import bytesize

    current = sum(item.size() if type(item) is DynamoType else bytesize(str(item))
                  for item in (list(self.keys()) + list(self.values())))
    new = bytesize(key) + (value.size() if type(value) is DynamoType else bytesize(str(value)))
    if current + new > 400 * 1024:
        raise ItemSizeTooLarge
    dict.__setitem__(self, key, value)


dynamo_type_module = __import__("moto.dynamodb.models.dynamo_type", fromlist=["LimitedSizeDict"])
dynamo_type_module.LimitedSizeDict.__setitem__ = _limited_setitem


# moto adds numbers with Python's default 28-digit context and reads a number without a "."
# through int(), which fails on "1e5". DynamoDB adds exactly to 38 significant digits and
# refuses a result past them or out of its range (issue #26: `$increment` relies on `ADD`).
_NUMBER_CONTEXT = decimal.Context(prec=38, Emin=-130, Emax=125, traps=[decimal.Inexact, decimal.Overflow,
                                                                      decimal.Underflow, decimal.InvalidOperation])
_moto_add = DynamoType.__add__


def _exact_add(self, other):
    if self.is_number() and other.is_number():
        try:
            total = _NUMBER_CONTEXT.add(decimal.Decimal(self.value), decimal.Decimal(other.value))
        except decimal.DecimalException:
            from moto.dynamodb.exceptions import MockValidationException
            raise MockValidationException(
                "Number overflow. Attempting to store a number with magnitude larger than supported range")
        text = format(total.normalize(_NUMBER_CONTEXT), "f") if abs(total.adjusted()) < 40 else str(total.normalize())
        return DynamoType({"N": text})
    return _moto_add(self, other)


DynamoType.__add__ = _exact_add
