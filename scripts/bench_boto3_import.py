#!/usr/bin/env python3
"""The reference half of `make bench-import`: the items an import of IMPORT_BENCH_ROWS rows
writes (one ~1 KB end-user item per row, our key schema), written the ordinary Python way,
boto3's `Table.batch_writer()`, to a fresh table on the local server named by
AWS_ENDPOINT_URL_DYNAMODB. Only the `with table.batch_writer()` block is timed (the items are
built beforehand). Prints `boto3_rows=... secs=... boto3_rows_per_s=...`.
"""
import os
import sys
import time
import uuid
from urllib.parse import urlsplit

import boto3


def main() -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", "")
    if urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: AWS_ENDPOINT_URL_DYNAMODB={endpoint!r} is not a local server", file=sys.stderr)
        return 2
    rows = int(os.environ.get("IMPORT_BENCH_ROWS", "100000"))
    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint)
    table = dynamodb.create_table(
        TableName=f"bench-boto3-import-{uuid.uuid4().hex[:12]}",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    integration = str(uuid.uuid4())
    notes = "n" * (max(int(os.environ.get("IMPORT_BENCH_ROW_BYTES", "800")), 60) - 60)
    items = [{"pk": f"acme#user{i}@bench.example", "sk": f"A#{integration}", "integrationId": integration,
              "updatedAt": "2026-11-29T10:00:00.000000000Z", "a:Customer_Type": f"type{i % 7}",
              "a:Notes": notes, "a:Seats": i} for i in range(rows)]
    start = time.monotonic()
    with table.batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)
    secs = time.monotonic() - start
    print(f"boto3_rows={rows} secs={secs:.2f} boto3_rows_per_s={rows / secs:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
