"""The server's behaviour through boto3: meter, ReturnConsumedCapacity, limits, throttling,
transaction conflicts, concurrency. Each test runs against an in-process server."""
import json
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from localdynamo.server import make_app

KB = 1024


@pytest.fixture(scope="module")
def server():
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    app = make_app()
    srv = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def ddb(server):
    app, url = server
    app.txn_s = 0.0
    app.buckets.scale = 1.0
    urllib.request.urlopen(urllib.request.Request(url + "/_meter/reset", method="POST"))
    client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    name = f"t{time.monotonic_ns()}"
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g", "gs")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "byG", "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "gs", "KeyType": "RANGE"}],
        }],
    )
    return app, url, client, name


def meter(url):
    return json.load(urllib.request.urlopen(url + "/_meter"))


def item(pk, sk, size=0, **extra):
    it = {"pk": {"S": pk}, "sk": {"S": sk}}
    if size:
        it["d"] = {"S": "x" * (size - 1 - len(pk) - len(sk) - 4)}  # names pk, sk, d: 5 bytes
    for k, v in extra.items():
        it[k] = {"S": v}
    return it


def code(e):
    return e.value.response["Error"]["Code"]


# --- capacity meter and ReturnConsumedCapacity ----------------------------------------------------
def test_put_of_a_1_5_kb_item_costs_2_write_units_and_meter_agrees(ddb):
    app, url, c, t = ddb
    r = c.put_item(TableName=t, Item=item("a", "1", int(1.5 * KB)), ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"]["CapacityUnits"] == 2.0
    m = meter(url)
    assert m["tables"][t]["wcu"] == 2.0
    assert m["operations"]["PutItem"] == {"requests": 1, "rcu": 0.0, "wcu": 2.0}
    assert m["keys"][0]["table"] == t and m["keys"][0]["pk"] == "a" and m["keys"][0]["wcu"] == 2.0


def test_no_consumed_capacity_unless_asked(ddb):
    _, _, c, t = ddb
    assert "ConsumedCapacity" not in c.put_item(TableName=t, Item=item("a", "1"))


def test_write_counts_the_larger_of_old_and_new(ddb):
    _, _, c, t = ddb
    c.put_item(TableName=t, Item=item("a", "1", 3 * KB))
    r = c.put_item(TableName=t, Item=item("a", "1", 100), ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"]["CapacityUnits"] == 3.0
    r = c.delete_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"]["CapacityUnits"] == 1.0


def test_index_writes_count_on_the_index_and_a_key_change_is_delete_plus_put(ddb):
    _, _, c, t = ddb
    r = c.put_item(TableName=t, Item=item("a", "1", 500, g="G1", gs="x"), ReturnConsumedCapacity="INDEXES")
    cc = r["ConsumedCapacity"]
    assert cc["Table"]["CapacityUnits"] == 1.0
    assert cc["GlobalSecondaryIndexes"]["byG"]["CapacityUnits"] == 1.0
    assert cc["CapacityUnits"] == 2.0
    # Changing the index key: a delete plus a put on the index.
    r = c.update_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, UpdateExpression="SET g = :g",
                      ExpressionAttributeValues={":g": {"S": "G2"}}, ReturnConsumedCapacity="INDEXES")
    assert r["ConsumedCapacity"]["GlobalSecondaryIndexes"]["byG"]["CapacityUnits"] == 2.0
    # An item without the index key costs nothing on the index.
    r = c.put_item(TableName=t, Item=item("b", "1"), ReturnConsumedCapacity="INDEXES")
    assert "GlobalSecondaryIndexes" not in r["ConsumedCapacity"]


def test_a_failed_conditional_write_still_consumes(ddb):
    _, url, c, t = ddb
    c.put_item(TableName=t, Item=item("a", "1"))
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=t, Item=item("a", "1"), ConditionExpression="attribute_not_exists(pk)",
                   ReturnConsumedCapacity="TOTAL")
    assert code(e) == "ConditionalCheckFailedException"
    assert meter(url)["operations"]["PutItem"]["wcu"] == 2.0


def test_reads_4_kb_units_eventual_half_missing_item_minimum(ddb):
    _, _, c, t = ddb
    c.put_item(TableName=t, Item=item("a", "1", 8 * KB))
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    assert c.get_item(TableName=t, Key=key, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["CapacityUnits"] == 1.0
    assert c.get_item(TableName=t, Key=key, ConsistentRead=True,
                      ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["CapacityUnits"] == 2.0
    missing = {"pk": {"S": "none"}, "sk": {"S": "1"}}
    assert c.get_item(TableName=t, Key=missing, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["CapacityUnits"] == 0.5


def test_query_adds_up_the_items_read_then_rounds_once(ddb):
    _, url, c, t = ddb
    for i in range(5):
        c.put_item(TableName=t, Item=item("q", str(i), 1000))
    r = c.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "q"}},
                ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert r["Count"] == 5
    assert r["ConsumedCapacity"]["CapacityUnits"] == 2.0  # 5,000 bytes: 2 units, not 5
    # A filter does not reduce what was read; a projection neither.
    r = c.query(TableName=t, KeyConditionExpression="pk = :p", FilterExpression="sk = :s",
                ProjectionExpression="pk", ExpressionAttributeValues={":p": {"S": "q"}, ":s": {"S": "0"}},
                ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert r["Count"] == 1 and r["ConsumedCapacity"]["CapacityUnits"] == 2.0
    keys = {(k["table"], k["pk"]): k for k in meter(url)["keys"]}
    assert keys[(t, "q")]["rcu"] == 4.0


def test_query_of_an_empty_partition_costs_the_minimum(ddb):
    _, _, c, t = ddb
    r = c.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "none"}},
                ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"]["CapacityUnits"] == 0.5


def test_batch_get_rounds_each_item(ddb):
    _, _, c, t = ddb
    c.put_item(TableName=t, Item=item("a", "1", int(1.5 * KB)))
    c.put_item(TableName=t, Item=item("b", "1", int(6.5 * KB)))
    keys = [{"pk": {"S": p}, "sk": {"S": "1"}} for p in ("a", "b")]
    r = c.batch_get_item(RequestItems={t: {"Keys": keys, "ConsistentRead": True}}, ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"][0]["CapacityUnits"] == 3.0  # 4 KB + 8 KB


def test_transactions_cost_twice(ddb):
    _, _, c, t = ddb
    r = c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": item("a", "1", 1500)}},
                                              {"Put": {"TableName": t, "Item": item("b", "1", 100)}}],
                               ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"][0]["CapacityUnits"] == 2 * 2 + 2 * 1
    keys = [{"Get": {"TableName": t, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}}]
    r = c.transact_get_items(TransactItems=keys, ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"][0]["CapacityUnits"] == 2.0


def test_meter_lists_busiest_keys_first_and_resets(ddb):
    _, url, c, t = ddb
    c.put_item(TableName=t, Item=item("small", "1"))
    for i in range(3):
        c.put_item(TableName=t, Item=item("big", str(i), 2 * KB))
    m = meter(url)
    assert [k["pk"] for k in m["keys"][:2]] == ["big", "small"]
    assert m["keys"][0]["wcu"] == 6.0 and m["keys"][0]["peak_wcu_per_s"] >= 2.0
    assert set(m) >= {"tables", "operations", "keys"}
    urllib.request.urlopen(urllib.request.Request(url + "/_meter/reset", method="POST"))
    m = meter(url)
    assert m["tables"] == {} and m["keys"] == [] and m["operations"] == {}


# --- service limits ----------------------------------------------------------------------------------
def test_batch_write_of_26_items_is_refused_with_aws_message(ddb):
    _, _, c, t = ddb
    writes = [{"PutRequest": {"Item": item("a", str(i))}} for i in range(26)]
    with pytest.raises(ClientError) as e:
        c.batch_write_item(RequestItems={t: writes})
    assert code(e) == "ValidationException"
    assert "Member must have length less than or equal to 25" in str(e.value)
    c.batch_write_item(RequestItems={t: writes[:25]})


def test_item_over_400_kb_and_keys_over_their_limits_are_refused(ddb):
    _, _, c, t = ddb
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=t, Item=item("a", "1", 400 * KB + 1))
    assert "Item size has exceeded the maximum allowed size" in str(e.value)
    c.put_item(TableName=t, Item=item("a", "1", 400 * KB))
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=t, Item=item("k" * 2049, "1"))
    assert "Size of hashkey has exceeded the maximum size limit of2048 bytes" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.get_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"S": "s" * 1025}})
    assert "Aggregated size of all range keys has exceeded the size limit of 1024 bytes" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
                ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"S": "s" * 1025}})
    assert "Aggregated size of all range keys has exceeded the size limit of 1024 bytes" in str(e.value)
    c.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
            ExclusiveStartKey={"pk": {"S": "a"}, "sk": {"S": "s" * 1024}})


def test_transaction_limits(ddb):
    _, _, c, t = ddb
    with pytest.raises(ClientError) as e:
        c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": item("a", str(i))}} for i in range(101)])
    assert "Member must have length less than or equal to 100" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": item("a", "1")}},
                                              {"Delete": {"TableName": t, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}}])
    assert "Transaction request cannot include multiple operations on one item" in str(e.value)


# --- per-partition-key throughput ------------------------------------------------------------------
def test_hot_key_throttles_and_a_throttled_write_changes_nothing(ddb):
    app, url, c, t = ddb
    app.buckets.scale = 1000.0  # one unit here = 1,000 on the bucket: the burst of one second
    c.put_item(TableName=t, Item=item("hot", "1", extra="first"))
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=t, Item=item("hot", "2"))
    assert code(e) == "ThrottlingException"
    assert "Throughput exceeds the current capacity" in str(e.value)
    assert "Item" not in c.get_item(TableName=t, Key={"pk": {"S": "hot"}, "sk": {"S": "2"}}, ConsistentRead=True)
    c.put_item(TableName=t, Item=item("cold", "1"))  # another key is unaffected
    m = meter(url)
    hot = next(k for k in m["keys"] if k["pk"] == "hot" and k["index"] is None)
    assert hot["throttled"] == 1 and hot["wcu"] == 1.0  # the meter reports real units, not scaled
    time.sleep(1.05)  # refilled at 1,000 per second
    c.put_item(TableName=t, Item=item("hot", "2"))


def test_batch_write_returns_throttled_items_as_unprocessed(ddb):
    app, _, c, t = ddb
    app.buckets.scale = 1000.0
    r = c.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": item("hot", str(i))}} for i in range(3)]})
    assert len(r["UnprocessedItems"][t]) == 2
    with pytest.raises(ClientError) as e:  # nothing left: the whole call is refused
        c.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": item("hot", "9")}}]})
    assert code(e) == "ProvisionedThroughputExceededException"


def test_hot_read_key_throttles_at_3000_rcu(ddb):
    app, _, c, t = ddb
    c.put_item(TableName=t, Item=item("r", "1"))
    app.buckets.scale = 3000.0
    key = {"pk": {"S": "r"}, "sk": {"S": "1"}}
    c.get_item(TableName=t, Key=key, ConsistentRead=True)
    with pytest.raises(ClientError) as e:
        c.get_item(TableName=t, Key=key, ConsistentRead=True)
    assert code(e) == "ThrottlingException"


# --- transactions ---------------------------------------------------------------------------------------
def test_items_of_a_transaction_in_flight_conflict(ddb):
    app, _, c, t = ddb
    app.txn_s = 0.6
    done = {}

    def slow():
        done["r"] = c.transact_write_items(TransactItems=[
            {"Update": {"TableName": t, "Key": {"pk": {"S": "x"}, "sk": {"S": "1"}},
                        "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}])

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.2)
    with pytest.raises(ClientError) as e:
        c.put_item(TableName=t, Item=item("x", "1"))
    assert code(e) == "TransactionConflictException"
    with pytest.raises(ClientError) as e:
        c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": item("other", "1")}},
                                              {"Put": {"TableName": t, "Item": item("x", "1")}}])
    assert code(e) == "TransactionCanceledException"
    reasons = [r["Code"] for r in e.value.response["CancellationReasons"]]
    assert reasons == ["None", "TransactionConflict"]
    # Other items are served meanwhile (requests run concurrently).
    started = time.monotonic()
    c.put_item(TableName=t, Item=item("y", "1"))
    assert time.monotonic() - started < 0.3
    th.join()
    assert "r" in done
    got = c.get_item(TableName=t, Key={"pk": {"S": "x"}, "sk": {"S": "1"}}, ConsistentRead=True)["Item"]
    assert got["n"] == {"N": "1"}
    assert "Item" not in c.get_item(TableName=t, Key={"pk": {"S": "other"}, "sk": {"S": "1"}})


def test_failed_transaction_changes_nothing(ddb):
    _, _, c, t = ddb
    c.put_item(TableName=t, Item=item("a", "1", extra="v0"))
    with pytest.raises(ClientError) as e:
        c.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": item("b", "1")}},
            {"Put": {"TableName": t, "Item": item("a", "1", extra="v1"), "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert code(e) == "TransactionCanceledException"
    assert "Item" not in c.get_item(TableName=t, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})


# --- concurrency -------------------------------------------------------------------------------------------
def test_concurrent_updates_are_atomic_and_readers_never_see_half_an_item(ddb):
    _, url, c, t = ddb
    errors = []

    def writer():
        cl = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
        for i in range(25):
            cl.update_item(TableName=t, Key={"pk": {"S": "c"}, "sk": {"S": f"{i % 5}"}},
                           UpdateExpression="ADD n :one SET v = :v",
                           ExpressionAttributeValues={":one": {"N": "1"}, ":v": {"S": "set"}})

    def reader():
        cl = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
        for _ in range(30):
            for it in cl.query(TableName=t, KeyConditionExpression="pk = :p",
                               ExpressionAttributeValues={":p": {"S": "c"}})["Items"]:
                if "n" not in it or "v" not in it:
                    errors.append(it)
            cl.scan(TableName=t)

    threads = [threading.Thread(target=writer) for _ in range(8)] + [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    items = c.query(TableName=t, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "c"}})["Items"]
    assert sum(int(i["n"]["N"]) for i in items) == 8 * 25


# --- ADD on numbers (patches.py: exact to 38 digits, as DynamoDB) ----------------------------------
def test_add_is_exact_to_38_digits_and_refuses_past_them(ddb):
    _, _, c, t = ddb
    key = {"pk": {"S": "n"}, "sk": {"S": "1"}}

    def add(delta):
        c.update_item(TableName=t, Key=key, UpdateExpression="ADD n :d", ExpressionAttributeValues={":d": {"N": delta}})
        return c.get_item(TableName=t, Key=key, ConsistentRead=True)["Item"]["n"]["N"]

    assert add("1e5") == "100000", "an exponent, which moto read through int()"
    assert add("0.1") == "100000.1"
    assert add("1234567890123456789012345678901234.5") == "1234567890123456789012345679001234.6"
    with pytest.raises(ClientError) as e:
        add("0.000001")
    assert code(e) == "ValidationException"
    assert add("-1234567890123456789012345679001234.6") == "0"
