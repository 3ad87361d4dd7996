"""How a search's text is normalised before it reaches SQL (no database needed)."""
import pytest

from app.services import errors
from app.services.search import MAX_QUERY_LENGTH, normalise_query


@pytest.mark.parametrize("raw, normal", [
    ("  the   godfather ", "the godfather"),
    ("tab\there\nnew\x1bline\x7f", "tab here new line"),
    ("zero\u200bwidth\ufeffjoin", "zero width join"),
    ("ＧＯＤＦＡＴＨＥＲ", "GODFATHER"),  # full-width letters
    ("ﬁlm", "film"),  # a ligature
    ("Café", "Café"),  # accents stay: PostgreSQL folds them, the same way as the index
    ("a & b | !c <-> d:*", "a & b | !c <-> d:*"),  # operators are left to websearch_to_tsquery
    ("\ue000private use", "private use"),
])
def test_normalised(raw, normal):
    assert normalise_query(raw) == normal


@pytest.mark.parametrize("raw", ["", "   ", "\x00", "\x01\x02\u200b", "x" * (MAX_QUERY_LENGTH + 1)])
def test_nothing_left_or_too_long_is_invalid_naming_q(raw):
    with pytest.raises(errors.Invalid) as caught:
        normalise_query(raw)
    assert list(caught.value.extra["errors"]) == ["q"]


def test_the_limit_counts_after_trimming():
    assert normalise_query("  " + "x" * MAX_QUERY_LENGTH + "  ") == "x" * MAX_QUERY_LENGTH
