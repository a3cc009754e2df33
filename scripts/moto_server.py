#!/usr/bin/env python3
"""moto's DynamoDB server with atomic, O(actions) TransactWriteItems and partition-local Query.

moto 5.2.5 deep-copies the whole table once per action of a TransactWriteItems (to roll back
on failure) and rolls back by putting those copies back. On a table of 25,000 items that makes
one 100-action transaction copy 2.5 million items, and the roll-back erases any write that
another request made meanwhile. DynamoDB does neither. This wrapper keeps moto's own
implementation of every action and condition, but:
- skips the table copies,
- journals the (at most 100) items the transaction touches and restores exactly those,
- runs transactions one at a time, as DynamoDB's serializable isolation implies, and every
  other item read or write under the same lock, because moto applies a write in steps (an
  `ADD` to a new item first creates it with its key only) that a concurrent read could see,
  while DynamoDB's item writes are atomic.
- lets a Query on a table's own key read only its partition: moto lists and sorts every item
  of the table for each Query, so reads slowed down with the table's size (a GET of one end
  user took ~0.5 s after a few thousand users were written; `make load` crawled).
Everything else is moto unchanged. Usage: the same arguments as `moto_server`.
"""
import copy
import logging
import sys
import threading
import types

from moto.dynamodb import models
from moto.dynamodb.models.table import Table
from moto.server import main

_lock = threading.RLock()
_original = models.DynamoDBBackend.transact_write_items


def _deepcopy(x, memo=None):
    # The transaction's roll-back copies are the only tables moto deep-copies.
    return x if isinstance(x, Table) else copy.deepcopy(x, memo)


models.copy = types.SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)


def _key(backend, op):
    table = backend.get_table(op["TableName"])
    if "Key" in op:
        return op["Key"]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def transact_write_items(self, transact_items):
    with _lock:
        journal = []
        for item in transact_items:
            try:
                _, op = next(iter(item.items()))
                key = _key(self, op)
                before = self.get_item(op["TableName"], key)
                journal.append((op["TableName"], key, before.to_json()["Attributes"] if before else None))
            except Exception:  # malformed actions are moto's to report
                pass
        try:
            return _original(self, transact_items)
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


models.DynamoDBBackend.transact_write_items = transact_write_items


_partition = threading.local()
_all_items = Table.all_items
_query = Table.query


def _partition_items(self):
    hash_key = getattr(_partition, "key", None)
    if hash_key is None:
        return _all_items(self)
    found = self.items.get(hash_key)  # a defaultdict: never index it with a missing key
    if found is None:
        return []
    return list(found.values()) if self.range_key_attr else [found]


def _partition_query(self, hash_key, *args, **kwargs):
    # The index name is Table.query's 8th parameter (moto's backend passes it positionally).
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None:
        return _query(self, hash_key, *args, **kwargs)
    _partition.key = hash_key
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _partition.key = None


Table.all_items = _partition_items
Table.query = _partition_query


def _locked(method):
    def run(self, *args, **kwargs):
        with _lock:
            return method(self, *args, **kwargs)

    return run


for _name in ("get_item", "put_item", "update_item", "delete_item", "query", "scan",
              "batch_get_item", "batch_write_item"):
    if hasattr(models.DynamoDBBackend, _name):
        setattr(models.DynamoDBBackend, _name, _locked(getattr(models.DynamoDBBackend, _name)))

# One access-log line per request cost ~7 % of the server's time under `make load`; errors
# and warnings still print.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

if __name__ == "__main__":
    sys.exit(main())
