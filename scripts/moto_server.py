#!/usr/bin/env python3
"""The local DynamoDB-compatible server of `make dev` and `make test`: moto 5.2.5 behind
scripts/localdynamo/, which meters capacity units like DynamoDB (GET /_meter), enforces its
service limits and per-partition-key throughput, makes transactions conflict as on AWS, and
serves requests concurrently. See docs/LOCAL_DYNAMODB.md. Usage: moto_server's -H / -p.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from localdynamo.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
