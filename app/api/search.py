"""Search: one ranked list across movies, theaters and cities, and prefix suggestions. Public."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import Blueprint, page_args, paged
from app.api.schemas import InputSchema
from app.services import search as search_service

search = Blueprint("search", __name__, url_prefix="/api/v1/search", description="Search")
blueprints = [search]

# Results change only when the catalog does; a short shared cache is harmless.
CACHE_CONTROL = "public, max-age=30"
_CACHE_HEADER = {"Cache-Control": {"description": CACHE_CONTROL, "schema": {"type": "string"}}}

_Q_RULES = ("Characters that are not text (controls, format characters) count as spaces; runs of spaces as "
            "one. Operators, quotes and punctuation are never syntax errors: `\"exact phrase\"` and `or` "
            "work as in web search engines, anything else is just text. An empty or all-space `q` "
            "is a 422 naming `q`, as is a NUL character.")


class SearchQuerySchema(InputSchema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=search_service.MAX_QUERY_LENGTH),
                      metadata={"description": "What to look for: words of a title, name, genre, description, "
                                               "address, city or country; typos and accents forgiven. " + _Q_RULES})
    kind = fields.String(validate=validate.OneOf(search_service.KINDS),
                         metadata={"description": "Only hits of this kind"})


class SuggestQuerySchema(InputSchema):
    q = fields.String(required=True,
                      validate=validate.Length(min=1, max=search_service.MAX_SUGGESTION_QUERY_LENGTH),
                      metadata={"description": "The start of a title or name (or of one of its words). " + _Q_RULES})
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=search_service.MAX_SUGGESTIONS))
    kind = fields.String(validate=validate.OneOf(search_service.KINDS),
                         metadata={"description": "Only suggestions of this kind"})


class SearchHitSchema(Schema):
    kind = fields.String(metadata={"description": "movie, theater or city", "enum": list(search_service.KINDS)})
    id = fields.Integer()
    name = fields.String(metadata={"description": "A movie's title, a theater's or city's name"})
    score = fields.Float(metadata={"description": "Relevance: higher is better (compare within one answer)"})
    year = fields.Integer(allow_none=True, metadata={"description": "movie: release year"})
    genres = fields.List(fields.String(), metadata={"description": "movie: genres"})
    city = fields.String(allow_none=True, metadata={"description": "theater: its city's name"})
    country = fields.String(allow_none=True, metadata={"description": "theater, city: the country"})


class SuggestionSchema(Schema):
    kind = fields.String(metadata={"enum": list(search_service.KINDS)})
    id = fields.Integer()
    text = fields.String(metadata={"description": "The title or name to offer"})


HITS = [
    {"kind": "movie", "id": 7, "name": "The Godfather", "score": 1.3684, "year": 1972, "genres": ["Crime", "Drama"]},
    {"kind": "theater", "id": 3, "name": "Godfrey Cinema", "score": 0.6012, "city": "Paris", "country": "France"},
    {"kind": "city", "id": 1, "name": "Paris", "score": 0.2, "country": "France"},
]
SUGGESTIONS = [{"kind": "movie", "id": 7, "text": "The Godfather"},
               {"kind": "movie", "id": 8, "text": "The Godfather Part II"}]


@search.route("")
class Search(MethodView):
    @search.arguments(SearchQuerySchema, location="query")
    @search.response(200, SearchHitSchema(many=True), example=HITS, headers=_CACHE_HEADER)
    @search.paginate()
    def get(self, args, pagination_parameters):
        """Search movies, theaters and cities at once: one list, best match first"""
        hits = search_service.search(args["q"], kind=args.get("kind"), **page_args(pagination_parameters))
        return paged(pagination_parameters, hits), 200, {"Cache-Control": CACHE_CONTROL}


@search.route("/suggest")
class Suggest(MethodView):
    @search.arguments(SuggestQuerySchema, location="query")
    @search.response(200, SuggestionSchema(many=True), example=SUGGESTIONS, headers=_CACHE_HEADER)
    def get(self, args):
        """Complete the start of a title or name (as the user types)"""
        suggestions = search_service.suggest(args["q"], limit=args["limit"], kind=args.get("kind"))
        return suggestions, 200, {"Cache-Control": CACHE_CONTROL}
