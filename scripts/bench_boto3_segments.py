#!/usr/bin/env python3
"""The reference half of `make bench-segments`: the same 25,000 member items written the
ordinary Python way, boto3's `Table.batch_writer()`, to a fresh table with our key schema
(pk S HASH, sk S RANGE), against the local server named by AWS_ENDPOINT_URL_DYNAMODB.

Three runs into the one fresh table, each under a new segment uuid (as our side writes three
fresh segments into one table); each run's time is the `with table.batch_writer()` block only
(the items are built beforehand). Prints `key=value` lines; the last one is the median:

    boto3_run=1 ids=25000 secs=... ids_per_s=...
    boto3_ids_per_s=...
"""

import os
import statistics
import sys
import time
import uuid
from urllib.parse import urlsplit

import boto3

IDS = 25_000
RUNS = 3
SHARDS = 100


def main() -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", "")
    if not endpoint:
        print("error: AWS_ENDPOINT_URL_DYNAMODB is not set (run `make bench-segments`)", file=sys.stderr)
        return 2
    if urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"error: AWS_ENDPOINT_URL_DYNAMODB={endpoint} is not a local server; refusing to run", file=sys.stderr)
        return 2

    dynamodb = boto3.resource("dynamodb", endpoint_url=endpoint)
    name = f"bench-boto3-{uuid.uuid4().hex[:12]}"
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    print(f"boto3 {boto3.__version__}: {IDS} ids x {RUNS} runs into {name} at {endpoint}", file=sys.stderr)

    rates = []
    for run in range(1, RUNS + 1):
        segment = uuid.uuid4()
        generation = uuid.uuid4().hex[:12]
        items = [
            {
                "pk": f"acme#SEG#{segment}#{generation}#{i % SHARDS:02d}",
                "sk": f"U#user{i}@company.com",
            }
            for i in range(IDS)
        ]
        start = time.perf_counter()
        with table.batch_writer() as batch:
            for item in items:
                batch.put_item(Item=item)
        secs = time.perf_counter() - start

        # Check (not timed): every item of this run is there.
        written = 0
        for shard in range(SHARDS):
            kwargs = {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": f"acme#SEG#{segment}#{generation}#{shard:02d}"},
                "Select": "COUNT",
            }
            while True:
                page = table.query(**kwargs)
                written += page["Count"]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if written != IDS:
            print(f"error: run {run} wrote {written} items, expected {IDS}", file=sys.stderr)
            return 1

        rate = IDS / secs
        rates.append(rate)
        print(f"boto3_run={run} ids={IDS} secs={secs:.3f} ids_per_s={rate:.1f}", flush=True)

    print(f"boto3_ids_per_s={statistics.median(rates):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
