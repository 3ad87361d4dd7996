"""What a JSON request body may be (app.api.parse_json_body): its nesting is measured
before any parser recurses, and what JSON or PostgreSQL cannot carry is refused."""
import json
import time

import pytest
from werkzeug.exceptions import HTTPException

from app.api import MAX_INTEGER, json_nesting_exceeds, parse_json_body


def _nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


@pytest.mark.parametrize("depth", [0, 1, 5, 31, 32])
def test_nesting_up_to_the_limit_passes(depth):
    assert not json_nesting_exceeds(_nested(depth), 32)


@pytest.mark.parametrize("depth", [33, 100, 1000, 100_000])
def test_nesting_past_the_limit_is_found(depth):
    assert json_nesting_exceeds(_nested(depth), 32)


def test_objects_and_arrays_count_alike_and_siblings_do_not_add_up():
    mixed = b'{"a": [{"b": [{"c": []}]}]}'
    assert not json_nesting_exceeds(mixed, 6) and json_nesting_exceeds(mixed, 5)
    wide = b"[" + b",".join([b"[[]]"] * 1000) + b"]"
    assert not json_nesting_exceeds(wide, 3) and json_nesting_exceeds(wide, 2)


def test_brackets_inside_strings_do_not_count():
    body = json.dumps({"name": "[" * 5000 + '\\"{' * 100, "x": ["]]]"]}).encode()
    assert not json_nesting_exceeds(body, 2)


def test_an_unclosed_run_of_brackets_counts_as_deep():
    assert json_nesting_exceeds(b"[" * 100_000, 32)
    assert json_nesting_exceeds(b'{"a":' + b"[" * 40, 32)
    assert json_nesting_exceeds(b"[[]" * 40, 32)  # each left open: 41 deep
    assert not json_nesting_exceeds(b"[]" * 40 + b"[", 32)  # many siblings, one left open


def test_hostile_strings_cost_one_pass():
    for body in (b'"\\"' * 500_000, b'"' * 1_000_000, b'\\"[' * 300_000):
        started = time.perf_counter()
        json_nesting_exceeds(body, 32)
        assert time.perf_counter() - started < 1.0


def _refused(body: bytes) -> tuple[int, dict]:
    with pytest.raises(HTTPException) as caught:
        parse_json_body(body, 32)
    return caught.value.code, caught.value.data


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deep_documents_are_400_json_too_deep(depth):
    status, data = _refused(b'{"name":' + _nested(depth) + b"}")
    assert (status, data["code"]) == (400, "json_too_deep")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(literal):
    status, data = _refused(f'{{"rating": {literal}}}'.encode())
    assert (status, data["code"]) == (400, "malformed_json")


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\xb7"}', b'{"a":', b"{'a': 1}", b"\x00"])
def test_what_is_not_utf8_json_is_malformed(body):
    status, data = _refused(body)
    assert (status, data["code"]) == (400, "malformed_json")


@pytest.mark.parametrize("number", [str(MAX_INTEGER + 1), str(-MAX_INTEGER - 1), str(2**64 + 1), "9" * 5000, "1e400",
                                    "-1e999"])
def test_numbers_no_column_holds_are_422_naming_their_field(number):
    status, data = _refused(f'{{"seat_ids": [1, {number}], "ok": 2}}'.encode())
    assert status == 422
    assert list(data["messages"]["json"]) == ["seat_ids.1"]


def test_what_fits_is_parsed_as_json_says():
    body = json.dumps({"n": MAX_INTEGER, "m": -MAX_INTEGER, "f": 1.5e300, "s": "x\u00e9\u2603", "deep": [[[]]]})
    assert parse_json_body(body.encode(), 32) == json.loads(body)
