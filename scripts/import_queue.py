#!/usr/bin/env python3
"""The local stand-in for S3 -> SQS -> Lambda of bulk imports (template.yaml: ImportBucket,
ImportQueue, ImportWorkerFunction's SQS event source).

  import_queue.py setup            creates the bucket and the queue on the local server and
                                   points the bucket's upload notifications at the queue, as
                                   the template does on AWS;
  import_queue.py poll <port>      delivers each queued message to the import-worker function
                                   served by `cargo lambda watch` on <port>, as the SQS event
                                   source mapping does (batch size 1, partial batch responses):
                                   a message is deleted unless the function reports it failed,
                                   and comes back after the visibility timeout otherwise.

Environment: AWS_ENDPOINT_URL_S3 (the local server), IMPORT_BUCKET, IMPORT_QUEUE (a name).
"""
import json
import os
import sys
import time
import urllib.request

import boto3

ENDPOINT = os.environ["AWS_ENDPOINT_URL_S3"]
BUCKET = os.environ.get("IMPORT_BUCKET", "ingest-imports")
QUEUE = os.environ.get("IMPORT_QUEUE", "ingest-imports")
# Locally a failed leg comes back after 10 s (on AWS: 6x the worker's timeout).
VISIBILITY = "10"


def clients():
    kw = dict(endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    return boto3.client("s3", **kw), boto3.client("sqs", **kw)


def setup():
    s3, sqs = clients()
    s3.create_bucket(Bucket=BUCKET)
    # As template.yaml's bucket: the console's page uploads to presigned URLs (a cross-origin PUT).
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [{
        "AllowedMethods": ["PUT"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 3600}]})
    url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": VISIBILITY})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{
            "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
        }]})
    print(json.dumps({"bucket": BUCKET, "queueUrl": url}))


def aws_shape(body):
    """S3's notification as AWS documents it: the local server leaves out a record's
    userIdentity, requestParameters and responseElements, which the worker's typed event
    (aws_lambda_events' S3Event) requires."""
    try:
        event = json.loads(body)
    except ValueError:
        return body
    for r in event.get("Records", []) if isinstance(event, dict) else []:
        r.setdefault("userIdentity", {"principalId": "local"})
        r.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
        r.setdefault("responseElements", {})
    return json.dumps(event)


def poll(port):
    _, sqs = clients()
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    invoke = f"http://127.0.0.1:{port}/2015-03-31/functions/import-worker/invocations"
    while True:
        try:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=2)
        except Exception as e:  # the server restarting: try again
            print(f"IMPORT queue unreachable: {e}", flush=True)
            time.sleep(1)
            continue
        for m in got.get("Messages", []):
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": aws_shape(m["Body"]),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"}]}
            keys = [r["s3"]["object"]["key"] for r in json.loads(m["Body"]).get("Records", [])]
            started = time.monotonic()
            try:
                req = urllib.request.Request(invoke, data=json.dumps(event).encode(), method="POST",
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=900) as r:
                    answer = json.loads(r.read() or b"{}")
                failed = any(f.get("itemIdentifier") == m["MessageId"]
                             for f in (answer or {}).get("batchItemFailures", []))
            except Exception as e:
                answer, failed = str(e), True
            ms = int((time.monotonic() - started) * 1000)
            if failed:
                print(f"IMPORT {keys or 'test event'} failed ({answer}); back in {VISIBILITY} s  {ms} ms", flush=True)
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                print(f"IMPORT {keys or 'test event'} done  {ms} ms", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"]:
        setup()
    elif sys.argv[1:2] == ["poll"] and len(sys.argv) == 3:
        poll(sys.argv[2])
    else:
        sys.exit(__doc__)
