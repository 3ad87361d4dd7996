"""Search and suggestions (issue 17) against the real PostgreSQL: full-text ranks,
trigram typos and prefixes, accents, hostile queries, pagination and the contract."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from sqlalchemy import text

from app import db

SEARCH = "/api/v1/search"
SUGGEST = "/api/v1/search/suggest"


@pytest.fixture
def catalog(api, admin):
    """Movies, theaters and cities to search: ids by a short name."""
    paris = api.city(admin, name="Paris", country="France")
    sao = api.city(admin, name="São Paulo", country="Brasil")
    lyon = api.city(admin, name="Lyon", country="France")
    ids = {"paris": paris["id"], "sao": sao["id"], "lyon": lyon["id"]}
    for key, title, genres, description, year in [
        ("godfather", "The Godfather", ["crime", "drama"], "The aging patriarch of a crime dynasty.", "1972-03-24"),
        ("godfather2", "The Godfather Part II", ["crime", "drama"], "The early life of Vito Corleone.", "1974-12-20"),
        ("cafe", "Café Society", ["comedy", "romance"], "A young man moves to Hollywood in the 1930s.", "2016-05-11"),
        ("it", "It", ["horror"], "Children face a shape-shifting clown.", "2017-09-08"),
        ("amelie", "Le Fabuleux Destin d'Amélie Poulain", ["comedy"], "A shy waitress in Montmartre.", "2001-04-25"),
        ("mob", "Mob Story", ["crime"], "A godfather of the docks runs out of friends.", "1989-01-01"),
        ("heat", "Heat", ["crime", "thriller"], "Thieves and the detective on their trail.", "1995-12-15"),
    ]:
        ids[key] = api.movie(admin, title=title, genres=genres, description=description, release_date=year)["id"]
    ids["grand"] = api.theater(admin, paris["id"], name="Le Grand Rex", address="1 Boulevard Poissonnière")["id"]
    ids["cinesesc"] = api.theater(admin, sao["id"], name="CineSesc", address="Rua Augusta 2075")["id"]
    ids["pathe"] = api.theater(admin, lyon["id"], name="Pathé Bellecour", address="79 Rue de la République")["id"]
    return ids


def _search(api, q, **params):
    r = api.get(SEARCH + "?" + "&".join([f"q={quote(q)}"] + [f"{k}={v}" for k, v in params.items()]))
    assert r.status_code == 200, r.json
    return r.json


def _suggest(api, q, **params):
    r = api.get(SUGGEST + "?" + "&".join([f"q={quote(q)}"] + [f"{k}={v}" for k, v in params.items()]))
    assert r.status_code == 200, r.json
    return r.json


def _ids(hits, kind="movie"):
    return [h["id"] for h in hits if h["kind"] == kind]


# --- finding things -----------------------------------------------------------

def test_a_typo_finds_the_title(api, catalog):
    hits = _search(api, "godfathr")
    assert _ids(hits)[:2] == [catalog["godfather"], catalog["godfather2"]]
    assert all(h["score"] > 0 for h in hits)


def test_accents_are_folded_both_ways(api, catalog):
    assert catalog["cafe"] in _ids(_search(api, "cafe"))
    assert catalog["cafe"] in _ids(_search(api, "CAFÉ"))
    assert catalog["amelie"] in _ids(_search(api, "amelie"))
    assert _ids(_search(api, "sao paulo"), "city") == [catalog["sao"]]
    assert catalog["pathe"] in _ids(_search(api, "pathe"), "theater")


def test_a_stop_word_title_is_found(api, catalog):
    """Titles are proper nouns: "It" is no English stop word there."""
    assert _ids(_search(api, "it"))[0] == catalog["it"]


def test_description_words_are_stemmed(api, catalog):
    assert catalog["godfather"] in _ids(_search(api, "dynasties"))
    assert catalog["cafe"] in _ids(_search(api, "comedies"))


def test_a_title_match_ranks_above_a_description_only_match(api, catalog):
    hits = _search(api, "godfather")
    movies = _ids(hits)
    assert catalog["mob"] in movies  # found by its description alone
    assert movies.index(catalog["godfather"]) < movies.index(catalog["mob"])
    assert movies.index(catalog["godfather2"]) < movies.index(catalog["mob"])
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_one_list_mixes_kinds_with_their_context(api, catalog):
    hits = _search(api, "paris")
    by_kind = {(h["kind"], h["id"]): h for h in hits}
    assert by_kind[("city", catalog["paris"])] == {
        "kind": "city", "id": catalog["paris"], "name": "Paris", "country": "France",
        "score": by_kind[("city", catalog["paris"])]["score"]}
    theater = by_kind[("theater", catalog["grand"])]  # found by its city
    assert (theater["name"], theater["city"], theater["country"]) == ("Le Grand Rex", "Paris", "France")
    assert hits[0]["kind"] == "city"  # the name itself ranks above a theater in it

    movie = _search(api, "heat")[0]
    assert movie == {"kind": "movie", "id": catalog["heat"], "name": "Heat", "score": movie["score"],
                     "year": 1995, "genres": ["crime", "thriller"]}


def test_kind_filter(api, catalog):
    assert {h["kind"] for h in _search(api, "paris", kind="theater")} == {"theater"}
    assert {h["kind"] for h in _search(api, "paris", kind="city")} == {"city"}
    assert _search(api, "paris", kind="movie") == []
    r = api.get(SEARCH + "?q=paris&kind=actor")
    assert r.status_code == 422 and "kind" in r.json["errors"]


def test_a_catalog_edit_is_searchable_at_once(api, admin, catalog):
    r = api.patch(f"/api/v1/movies/{catalog['heat']}", {"title": "Chaleur Brûlante"}, admin)
    assert r.status_code == 200, r.json
    assert catalog["heat"] in _ids(_search(api, "brulante"))
    assert catalog["heat"] not in _ids(_search(api, "heat", kind="movie"))


# --- pagination -----------------------------------------------------------------

def test_pages_cover_the_list_once(api, admin):
    city = api.city(admin)
    for i in range(7):
        api.movie(admin, title=f"Paris Story {i}")
        api.theater(admin, city["id"], name=f"Paris Screen {i}")
    everything = _search(api, "paris", page_size=100)
    assert len(everything) == 15
    seen = []
    for page in (1, 2, 3, 4):
        r = api.get(f"{SEARCH}?q=paris&page={page}&page_size=4")
        assert r.status_code == 200
        meta = json.loads(r.headers["X-Pagination"])
        assert (meta["total"], meta["page"], meta["total_pages"]) == (15, page, 4)
        seen += [(h["kind"], h["id"]) for h in r.json]
    assert seen == [(h["kind"], h["id"]) for h in everything]
    r = api.get(f"{SEARCH}?q=paris&page=9&page_size=4")
    assert r.status_code == 200 and r.json == []
    assert json.loads(r.headers["X-Pagination"])["total"] == 15
    r = api.get(f"{SEARCH}?q=paris&page={2**80}&page_size=100")  # an offset no bigint holds
    assert r.status_code == 200 and r.json == []
    assert json.loads(r.headers["X-Pagination"])["total"] == 15
    assert api.get(f"{SEARCH}?q=paris&page_size=101").status_code == 422


# --- suggestions ------------------------------------------------------------------

def test_suggestions_complete_a_prefix(api, catalog):
    suggestions = _suggest(api, "godf")
    assert [s["text"] for s in suggestions][:2] == ["The Godfather", "The Godfather Part II"]
    assert suggestions[0] == {"kind": "movie", "id": catalog["godfather"], "text": "The Godfather"}


def test_suggestions_start_of_name_before_start_of_a_word(api, admin, catalog):
    api.movie(admin, title="Heathers")
    api.movie(admin, title="The Heat")
    texts = [s["text"] for s in _suggest(api, "hea")]
    assert texts[:2] == ["Heat", "Heathers"]  # the name starts with it: shorter first
    assert texts[2] == "The Heat"  # a later word starts with it


def test_one_letter_completes_the_start_of_names(api, catalog):
    texts = [s["text"] for s in _suggest(api, "l")]
    assert texts == ["Lyon", "Le Grand Rex", "Le Fabuleux Destin d'Amélie Poulain"]


def test_suggestions_fold_accents_and_forgive_typos(api, catalog):
    assert ("city", catalog["sao"]) in [(s["kind"], s["id"]) for s in _suggest(api, "sao p")]
    assert ("movie", catalog["cafe"]) in [(s["kind"], s["id"]) for s in _suggest(api, "cafe")]
    assert ("movie", catalog["godfather"]) in [(s["kind"], s["id"]) for s in _suggest(api, "godfathr")]


def test_suggestion_limit_and_kind(api, admin, catalog):
    for i in range(25):
        api.movie(admin, title=f"Godzilla {i}")
    assert len(_suggest(api, "god")) == 10
    assert len(_suggest(api, "god", limit=20)) == 20
    assert api.get(f"{SUGGEST}?q=god&limit=21").status_code == 422
    assert {s["kind"] for s in _suggest(api, "pa", kind="city")} == {"city"}


def test_like_wildcards_in_a_prefix_are_literal(api, admin):
    api.movie(admin, title="100% Wolf")
    api.movie(admin, title="1000 Wolves")
    assert [s["text"] for s in _suggest(api, "100%")][0] == "100% Wolf"
    assert _suggest(api, "%") == []
    assert _suggest(api, "_") == []
    assert _suggest(api, "\\") == []


# --- the contract ------------------------------------------------------------------

def test_public_and_briefly_cacheable(api, catalog):
    for path in (f"{SEARCH}?q=heat", f"{SUGGEST}?q=hea"):
        r = api.get(path)
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "public, max-age=30"


@pytest.mark.parametrize("path", [SEARCH, SUGGEST])
def test_unknown_parameter_is_400(api, path):
    r = api.get(f"{path}?q=heat&qq=1")
    assert r.status_code == 400
    assert r.json["code"] == "unknown_parameter" and r.json["parameters"] == ["qq"]


@pytest.mark.parametrize("query", ["", "q=", "q=%20%20%20", "q=%01%02%1f", "q=%E2%80%8B", "q=" + "x" * 201])
def test_missing_empty_or_too_long_q_is_422_naming_q(api, query):
    r = api.get(f"{SEARCH}?{query}")
    assert r.status_code == 422, r.json
    assert r.json["code"] == "validation_error" and "q" in r.json["errors"]


HOSTILE = [
    "godfather & | ! : * < - ( ) <-> <2>",
    "!!!",
    "&&&|||",
    "'",
    "\"unclosed",
    "\"the godfather\"",
    "a:* & !b",
    "god:*",
    "\\",
    "\\\\'); DROP TABLE movies; --",
    "%_%",
    "' OR 1=1 --",
    "((((((((((",
    ")))",
    "-",
    "or",
    "-godfather",
    "<->",
    ".,;:?!",
    "🎬🍿 godfather 🎥",
    "👨‍👩‍👧‍👦",
    "tab\there\nnewline\rreturn\x1bescape\x7fdel",
    "\u200b\u200dzero\ufeffwidth",
    "\U0010ffff private",
    "ＧＯＤＦＡＴＨＥＲ",
    "x" * 200,
    "é" * 200,
    "godfather " * 20,
]


@pytest.mark.parametrize("q", HOSTILE)
def test_a_hostile_q_gets_a_clean_answer_and_changes_nothing(api, app, catalog, q):
    before = _snapshot(app)
    for path in (SEARCH, SUGGEST):
        r = api.get(path, query_string={"q": q})
        assert r.status_code in (200, 422), (path, r.status_code, r.json)
        assert r.status_code == 200 or "q" in r.json["errors"]
        assert isinstance(r.json, list) or r.json["code"] == "validation_error"
    assert _snapshot(app) == before


@pytest.mark.parametrize("q", ["\x00", "god\x00father", "x" * 10_240, "🎬" * 5_000, "\\" * 10_240])
def test_nul_and_10_kb_are_422_and_change_nothing(api, app, catalog, q):
    before = _snapshot(app)
    for path in (SEARCH, SUGGEST):
        r = api.get(path, query_string={"q": q})
        assert r.status_code == 422, (path, r.json)
        assert r.json["code"] == "validation_error" and "q" in r.json["errors"]
    assert _snapshot(app) == before


def test_a_quoted_phrase_ranks_the_phrase_first(api, catalog):
    assert _ids(_search(api, "\"godfather part\""))[0] == catalog["godfather2"]


def _snapshot(app) -> list:
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT 'movie', id, title FROM movies UNION ALL SELECT 'theater', id, name FROM theaters"
            " UNION ALL SELECT 'city', id, name FROM cities ORDER BY 1, 2")).all()
        db.session.rollback()
    return [tuple(row) for row in rows]
