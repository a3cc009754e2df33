"""The sizing rules against the examples of AWS's own pages (Amazon DynamoDB Developer Guide):
"DynamoDB item sizes and formats" and "DynamoDB read and write operations"."""
import base64

import pytest

from localdynamo import sizing

KB = 1024


# --- "DynamoDB item sizes and formats" -----------------------------------------------------------
def test_string_is_name_plus_utf8_bytes():
    assert sizing.item_size({"name": {"S": "abc"}}) == 4 + 3
    assert sizing.item_size({"é": {"S": "日本"}}) == 2 + 6  # UTF-8 bytes, not characters


@pytest.mark.parametrize("number, size", [
    ("1", 2),            # 1 significant digit: 1 byte + 1
    ("12", 2),           # 2 digits: 1 byte + 1
    ("123", 3),          # 3 digits: 2 bytes + 1
    ("1200", 2),         # trailing zeroes trimmed: "12"
    ("0.00120", 2),      # leading and trailing zeroes trimmed: "12"
    ("12345678901234567890123456789012345678", 20),  # 38 digits: 19 + 1
    ("-12", 3),          # the sign takes a byte
    ("0", 1),
])
def test_number_is_one_byte_per_two_significant_digits_plus_one(number, size):
    assert sizing.value_size({"N": number}) == size
    assert sizing.item_size({"n": {"N": number}}) == 1 + size


def test_binary_counts_raw_bytes_not_base64():
    raw = bytes(range(30))
    assert sizing.item_size({"b": {"B": base64.b64encode(raw).decode()}}) == 1 + 30


def test_null_and_boolean_are_one_byte():
    assert sizing.item_size({"ok": {"BOOL": True}}) == 2 + 1
    assert sizing.item_size({"no": {"NULL": True}}) == 2 + 1


def test_list_and_map_are_3_bytes_plus_elements_plus_1_byte_each():
    assert sizing.item_size({"l": {"L": []}}) == 1 + 3
    assert sizing.item_size({"m": {"M": {}}}) == 1 + 3
    # L: 3 + ("ab": 2 + 1) + (N "12": 2 + 1)
    assert sizing.item_size({"l": {"L": [{"S": "ab"}, {"N": "12"}]}}) == 1 + 3 + 3 + 3
    # M: 3 + (name "k" 1 + "v" 1 + 1)
    assert sizing.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 3


def test_sets_add_their_elements():
    assert sizing.item_size({"s": {"SS": ["a", "bc"]}}) == 1 + 3
    assert sizing.item_size({"s": {"NS": ["1", "123"]}}) == 1 + 2 + 3


# --- "DynamoDB read and write operations" --------------------------------------------------------
def test_a_3500_byte_item_reads_like_a_4_kb_item():
    assert sizing.read_units(3500, "strong") == sizing.read_units(4 * KB, "strong") == 1


def test_an_8_kb_item_needs_2_strong_1_eventual_4_transactional_read_units():
    assert sizing.read_units(8 * KB, "strong") == 2
    assert sizing.read_units(8 * KB, "eventual") == 1
    assert sizing.read_units(8 * KB, "transactional") == 4


def test_getitem_of_3_5_kb_rounds_to_4_kb():
    assert sizing.read_units(int(3.5 * KB), "strong") == 1
    assert sizing.read_units(int(3.5 * KB), "eventual") == 0.5


def test_a_missing_item_still_costs_the_minimum():
    assert sizing.read_units(0, "strong") == 1
    assert sizing.read_units(0, "eventual") == 0.5
    assert sizing.write_units(0) == 1


def test_batchgetitem_rounds_each_item_1_5_kb_plus_6_5_kb_is_12_kb():
    # "a 1.5 KB item and a 6.5 KB item ... 12 KB (4 KB + 8 KB), not 8 KB (1.5 KB + 6.5 KB)"
    assert sizing.batch_get_read_units([int(1.5 * KB), int(6.5 * KB)], "strong") == 3


def test_query_adds_the_sizes_then_rounds_once_40_8_kb_is_44_kb():
    # "10 items whose combined size is 40.8 KB ... rounds the item size for the operation to 44 KB"
    sizes = [int(4.08 * KB)] * 10
    assert sizing.query_read_units(sizes, "strong") == 11
    assert sizing.query_read_units(sizes, "eventual") == 5.5


def test_writes_count_1_kb_units_transactional_twice():
    assert sizing.write_units(int(1.5 * KB)) == 2
    assert sizing.write_units(KB) == 1
    assert sizing.write_units(KB + 1) == 2
    assert sizing.write_units(500, transactional=True) == 2
