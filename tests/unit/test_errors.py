"""Problem documents and request ids."""
from app.api.problems import flatten_validation_messages
from app.logging_setup import accept_or_create_request_id


def test_validation_messages_are_merged_across_locations():
    flat = flatten_validation_messages({"json": {"name": ["Missing"]}, "query": {"page": ["Bad"]}})
    assert flat == {"name": ["Missing"], "page": ["Bad"]}


def test_a_sane_request_id_is_kept_and_a_hostile_one_replaced():
    assert accept_or_create_request_id("abc-123") == "abc-123"
    replaced = accept_or_create_request_id("bad id\nwith newline")
    assert replaced != "bad id\nwith newline" and len(replaced) == 32
    assert len(accept_or_create_request_id("x" * 500)) == 32
    assert accept_or_create_request_id(None)


def test_nested_validation_messages_become_field_paths():
    flat = flatten_validation_messages({"json": {"seat_ids": {0: ["Not a valid integer."]},
                                                 "layout": {"rows": {2: {"label": ["Missing"]}}}}})
    assert flat == {"seat_ids.0": ["Not a valid integer."], "layout.rows.2.label": ["Missing"]}


def test_every_validation_message_is_a_list_of_strings():
    assert flatten_validation_messages(["Invalid input type."]) == {"_schema": ["Invalid input type."]}
    assert flatten_validation_messages({"json": ["Not an object"]}) == {"json": ["Not an object"]}
