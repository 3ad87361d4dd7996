"""Search over movies, theaters and cities: one ranked list, and prefix suggestions.

PostgreSQL does it all (migration 0013): each table has a weighted ``search_vector``
(movies: title A, genres B, description C; theaters: name A, address B, and their
city as C; cities: name A, country B) and a ``search_name`` (the title or name,
lower-cased and unaccented) with a trigram index.

- A hit matches the text query (``websearch_to_tsquery`` in both configurations:
  ``marquee_english``, stemmed, and ``marquee_names``, words as written) or is
  close to it by trigrams (``<%``: ``word_similarity`` at least
  ``pg_trgm.word_similarity_threshold``, 0.6), which forgives typos ("godfathr").
- Its score: ``ts_rank`` (a title word weighs 1.0, a genre 0.4, a description
  word 0.2) + ``word_similarity`` of the text and the name. Higher is better;
  scores compare within one answer. Between equal scores the shorter name comes
  first ("The Godfather" before "The Godfather Part II"). Every hit is scored
  (the total is exact): a query found in thousands of descriptions costs tens of
  milliseconds (loadtests/bench_search.py).
- The text of a query only ever reaches SQL as a bound parameter, and only through
  functions that take any text (``websearch_to_tsquery`` never fails on syntax), so
  operators, quotes or backslashes in it are words or nothing, never syntax.
"""
from __future__ import annotations

import re
import unicodedata

from sqlalchemy import text

from app import db
from app.services import errors

KINDS = ("movie", "theater", "city")
MAX_QUERY_LENGTH = 200
MAX_SUGGESTION_QUERY_LENGTH = 100
MAX_SUGGESTIONS = 20
# No table holds more rows than a bigint counts (an OFFSET past it is an SQL error).
_MAX_ROWS = 2**63 - 1

# Unicode categories that are no text a person searches for: controls (NUL
# included), format characters, surrogates, private use. They become spaces.
_NOT_TEXT = {"Cc", "Cf", "Cs", "Co"}

# The query as SQL sees it: both text queries OR-ed, and the folded text.
_TSQUERY = "(websearch_to_tsquery('marquee_english', :q) || websearch_to_tsquery('marquee_names', :q))"
_FOLDED = "marquee_fold(:q)"
# The folded text as a LIKE pattern that matches just itself (backslash escapes, LIKE's default).
_LITERAL = r"replace(replace(replace(marquee_fold(:q), '\', '\\'), '%', '\%'), '_', '\_')"


def _score(vector: str, name: str) -> str:
    return f"ts_rank({vector}, {_TSQUERY}) + word_similarity({_FOLDED}, {name})"


# One SELECT per kind, all with the same named columns (any one may come alone):
# kind, id, name, score, year, genres, city, country.
_HITS = {
    "movie": f"""
        SELECT 'movie' AS kind, m.id, m.title AS name, {_score('m.search_vector', 'm.search_name')} AS score,
               extract(year FROM m.release_date)::int AS year, m.genres, NULL::varchar AS city, NULL::varchar AS country
        FROM movies m
        WHERE m.search_vector @@ {_TSQUERY} OR {_FOLDED} <% m.search_name""",
    # A theater also matches by its city's name and country (weighed as C).
    "theater": f"""
        SELECT 'theater' AS kind, t.id, t.name,
               {_score("t.search_vector || setweight(c.search_vector, 'C')", 't.search_name')} AS score,
               NULL::int AS year, NULL::varchar[] AS genres, c.name AS city, c.country
        FROM theaters t JOIN cities c ON c.id = t.city_id
        WHERE t.search_vector @@ {_TSQUERY} OR {_FOLDED} <% t.search_name OR c.search_vector @@ {_TSQUERY}""",
    "city": f"""
        SELECT 'city' AS kind, c.id, c.name, {_score('c.search_vector', 'c.search_name')} AS score,
               NULL::int AS year, NULL::varchar[] AS genres, NULL::varchar AS city, c.country
        FROM cities c
        WHERE c.search_vector @@ {_TSQUERY} OR {_FOLDED} <% c.search_name""",
}

# Suggestions come in two steps, each a top-N the indexes serve, never a sort of
# thousands of rows with trigram arithmetic in each:
# 1. Completions. From three letters on, names containing the text (the trigram
#    index serves LIKE '%...%'): a name that starts with it first, then one with a
#    word that starts with it, then the rest, each shorter first. With one or two
#    letters (a trigram index finds nothing that short), names that start with it,
#    in order (the btree index on search_name serves LIKE '...%' in that order).
# 2. Only when that leaves room: names close to the text (typos), closest first.
_SUGGESTION_TABLES = {"movie": ("movies", "title"), "theater": ("theaters", "name"), "city": ("cities", "name")}
_COMPLETIONS = {
    kind: f"""(
        SELECT '{kind}' AS kind, x.id, x.{name} AS text,
               CASE WHEN x.search_name LIKE {_LITERAL} || '%' THEN 0
                    WHEN x.search_name LIKE '% ' || {_LITERAL} || '%' THEN 1 ELSE 2 END AS tier,
               length(x.search_name) AS size
        FROM {table} x
        WHERE x.search_name LIKE '%' || {_LITERAL} || '%'
        ORDER BY tier, size, x.id LIMIT :limit)"""
    for kind, (table, name) in _SUGGESTION_TABLES.items()
}
_SHORT_COMPLETIONS = {
    kind: f"""(
        SELECT '{kind}' AS kind, x.id, x.{name} AS text, 0 AS tier, length(x.search_name) AS size
        FROM {table} x
        WHERE x.search_name COLLATE "C" LIKE {_LITERAL} || '%'
        ORDER BY x.search_name COLLATE "C", x.id LIMIT :limit)"""
    for kind, (table, name) in _SUGGESTION_TABLES.items()
}
_CLOSE_NAMES = {
    kind: f"""(
        SELECT '{kind}' AS kind, x.id, x.{name} AS text, word_similarity({_FOLDED}, x.search_name) AS closeness,
               length(x.search_name) AS size
        FROM {table} x
        WHERE {_FOLDED} <% x.search_name AND x.search_name NOT LIKE '%' || {_LITERAL} || '%'
        ORDER BY closeness DESC, size, x.id LIMIT :limit)"""
    for kind, (table, name) in _SUGGESTION_TABLES.items()
}
# Three letters or digits in a row: what a trigram index can look up (pg_trgm
# ignores everything else, the underscore included).
_TRIGRAM_WORD = re.compile(r"[^\W_]{3}")


def normalise_query(q: str, max_length: int = MAX_QUERY_LENGTH) -> str:
    """The text of a search as it is searched: NFKC (full-width letters, ligatures
    become plain ones), characters that are not text (controls, NUL, format
    characters) turned into spaces, runs of spaces made one, trimmed. An
    ``Invalid`` (field ``q``) when nothing is left or more than ``max_length``
    characters are."""
    normal = unicodedata.normalize("NFKC", q)
    normal = "".join(" " if unicodedata.category(ch) in _NOT_TEXT else ch for ch in normal)
    normal = " ".join(normal.split())
    if not normal:
        raise _invalid_q("Must contain some text besides spaces and control characters")
    if len(normal) > max_length:
        raise _invalid_q(f"At most {max_length} characters")
    return normal


def _invalid_q(message: str) -> errors.Invalid:
    return errors.Invalid(message, errors={"q": [message]})


def _kinds(kind: str | None) -> tuple[str, ...]:
    if kind is None:
        return KINDS
    if kind not in KINDS:
        message = f"Must be one of {', '.join(KINDS)}"
        raise errors.Invalid(message, errors={"kind": [message]})
    return (kind,)


def search(q: str, page: int, page_size: int, kind: str | None = None) -> tuple[list[dict], int]:
    """One page of hits for ``q`` across movies, theaters and cities (or the one
    ``kind``), best first, and how many there are. Each hit: ``kind``, ``id``,
    ``name``, ``score`` and its context (``year``, ``genres``; ``city``; ``country``)."""
    params = {"q": normalise_query(q)}
    hits = " UNION ALL ".join(_HITS[k] for k in _kinds(kind))
    offset = (page - 1) * page_size
    rows = [] if offset > _MAX_ROWS else db.session.execute(text(f"""
        WITH hits AS ({hits})
        SELECT *, count(*) OVER () AS total FROM hits
        ORDER BY score DESC, length(name), kind, id
        LIMIT :limit OFFSET :offset"""), {**params, "limit": page_size, "offset": offset}).mappings().all()
    if rows:
        total = rows[0]["total"]
    else:  # past the last page (or nothing at all): count them alone
        total = db.session.scalar(text(f"SELECT count(*) FROM ({hits}) AS hits"), params)
    return [_hit(row) for row in rows], int(total or 0)


def _hit(row) -> dict:
    hit = {"kind": row["kind"], "id": row["id"], "name": row["name"], "score": round(float(row["score"]), 4)}
    if row["kind"] == "movie":
        hit.update(year=row["year"], genres=list(row["genres"] or []))
    elif row["kind"] == "theater":
        hit.update(city=row["city"], country=row["country"])
    else:
        hit["country"] = row["country"]
    return hit


def suggest(q: str, limit: int = 10, kind: str | None = None) -> list[dict]:
    """Up to ``limit`` (at most ``MAX_SUGGESTIONS``) completions of ``q`` as
    ``kind``, ``id``, ``text``: names that start with it, then (from three letters
    or digits in a row on) names with a word that starts with it, then names close
    to it (typos)."""
    normal = normalise_query(q, MAX_SUGGESTION_QUERY_LENGTH)
    params = {"q": normal, "limit": max(1, min(limit, MAX_SUGGESTIONS))}
    kinds = _kinds(kind)
    long_enough = _TRIGRAM_WORD.search(normal) is not None
    completions = _COMPLETIONS if long_enough else _SHORT_COMPLETIONS
    found = db.session.execute(text(
        f"SELECT * FROM ({' UNION ALL '.join(completions[k] for k in kinds)}) AS completions"
        " ORDER BY tier, size, kind, id LIMIT :limit"), params).mappings().all()
    # A typo needs a word to be in: "of" is close to every "X of the Y".
    if long_enough and len(found) < params["limit"]:
        found += db.session.execute(text(
            f"SELECT * FROM ({' UNION ALL '.join(_CLOSE_NAMES[k] for k in kinds)}) AS close_names"
            " ORDER BY closeness DESC, size, kind, id LIMIT :limit"),
            {**params, "limit": params["limit"] - len(found)}).mappings().all()
    return [{"kind": row["kind"], "id": row["id"], "text": row["text"]} for row in found]
