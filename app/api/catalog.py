"""The catalog: public reads; writes by admins, and by a theater's managers for that
theater's own (the theater, its screens, their showtimes, blocked seats): the services
decide from the object. Hot reads go through the cache."""
from __future__ import annotations

import hashlib
import json

from flask import Response
from flask.views import MethodView

from app.api import Blueprint, page_args, paged
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import admin_required, current_actor, staff_required
from app.services import blocked_seats, catalog, seats

cities = Blueprint("cities", __name__, url_prefix="/api/v1/cities", description="Cities")
theaters = Blueprint("theaters", __name__, url_prefix="/api/v1/theaters", description="Theaters")
screens = Blueprint("screens", __name__, url_prefix="/api/v1", description="Screens and their seats")
movies = Blueprint("movies", __name__, url_prefix="/api/v1/movies", description="Movies")
showtimes = Blueprint("showtimes", __name__, url_prefix="/api/v1/showtimes", description="Showtimes")
blueprints = [cities, theaters, screens, movies, showtimes]


def _cached_body(blp, name, params, compute) -> Response:
    """A cached body sent as stored (no re-dump), with its ETag (304 when unchanged)."""
    body = catalog.cached_json(name, params, compute)
    blp.set_etag(hashlib.sha1(body).hexdigest())
    return Response(body, mimetype="application/json")


# --- cities -----------------------------------------------------------------

@cities.route("")
class Cities(MethodView):
    @cities.etag
    @cities.arguments(s.CityQuerySchema, location="query")
    @cities.response(200, s.CitySchema(many=True), example=[s.CITY])
    @cities.paginate()
    def get(self, args, pagination_parameters):
        """List cities"""
        return paged(pagination_parameters, catalog.list_cities(q=args.get("q"), **page_args(pagination_parameters)))

    @admin_required
    @idempotent
    @cities.arguments(s.CitySchema, example=s.CITY_IN)
    @cities.response(201, s.CitySchema, example=s.CITY)
    @cities.alt_response(409, response="CONFLICT")
    def post(self, data):
        """Create a city"""
        return catalog.create_city(data, actor=current_actor())


@cities.route("/<int:city_id>")
class CityById(MethodView):
    @cities.etag
    @cities.response(200, s.CitySchema, example=s.CITY)
    @cities.alt_response(404, response="NOT_FOUND")
    def get(self, city_id):
        """Get a city"""
        return catalog.get_city(city_id)

    @admin_required
    @cities.arguments(s.CityPatchSchema, example={"name": "Paris"})
    @cities.response(200, s.CitySchema, example=s.CITY)
    @cities.alt_response(404, response="NOT_FOUND")
    def patch(self, data, city_id):
        """Update a city"""
        return catalog.update_city(city_id, data, actor=current_actor())

    @admin_required
    @cities.response(204)
    @cities.alt_response(404, response="NOT_FOUND")
    @cities.alt_response(409, response="CONFLICT", description="in_use: it still has theaters")
    def delete(self, city_id):
        """Delete a city that has no theaters"""
        catalog.delete_city(city_id, actor=current_actor())


# --- theaters ---------------------------------------------------------------

def _theater_out(theater, distance_km):
    out = s.TheaterSchema().dump(theater)
    if distance_km is not None:
        out["distance_km"] = round(float(distance_km), 3)
    return out


@theaters.route("")
class Theaters(MethodView):
    @theaters.etag
    @theaters.arguments(s.TheaterQuerySchema, location="query")
    @theaters.response(200, s.TheaterSchema(many=True), example=[{**s.THEATER, "distance_km": 0.42}])
    @theaters.paginate()
    def get(self, args, pagination_parameters):
        """List theaters; `near=lat,lng` sorts by distance within `radius_km`"""
        rows, total = catalog.list_theaters(
            city_id=args.get("city_id"),
            near=args.get("near"),
            radius_km=args["radius_km"],
            **page_args(pagination_parameters),
        )
        return paged(pagination_parameters, ([_theater_out(t, d) for t, d in rows], total))

    @admin_required
    @idempotent
    @theaters.arguments(s.TheaterSchema, example=s.THEATER_IN)
    @theaters.response(201, s.TheaterSchema, example=s.THEATER)
    def post(self, data):
        """Create a theater in a city"""
        return catalog.create_theater(data, actor=current_actor())


@theaters.route("/<int:theater_id>")
class TheaterById(MethodView):
    @theaters.etag
    @theaters.response(200, s.TheaterSchema, example=s.THEATER)
    @theaters.alt_response(404, response="NOT_FOUND")
    def get(self, theater_id):
        """Get a theater"""
        return catalog.get_theater(theater_id)

    @staff_required
    @theaters.arguments(s.TheaterPatchSchema, example={"address": "8 Rue Scribe, 75009 Paris"})
    @theaters.response(200, s.TheaterSchema, example=s.THEATER)
    @theaters.alt_response(404, response="NOT_FOUND")
    def patch(self, data, theater_id, actor):
        """Update a theater (admin, or a manager of this theater)"""
        return catalog.update_theater(theater_id, data, actor=actor)

    @staff_required
    @theaters.response(204)
    @theaters.alt_response(404, response="NOT_FOUND")
    @theaters.alt_response(409, response="CONFLICT", description="in_use: it still has screens")
    def delete(self, theater_id, actor):
        """Delete a theater that has no screens (admin, or a manager of this theater)"""
        catalog.delete_theater(theater_id, actor=actor)


# --- screens ----------------------------------------------------------------

def _screen_detail(screen_id: int) -> Response:
    def compute():
        screen = catalog.get_screen(screen_id)
        seat_rows = catalog.screen_seats(screen_id)
        out = s.ScreenSchema().dump(screen)
        out["seats"] = s.SeatSchema(many=True).dump(seat_rows)
        out["focal_point"] = s.FocalPointSchema().dump(catalog.screen_focal_point(screen, seat_rows))
        return out

    return _cached_body(screens, "screen", screen_id, compute)


@screens.route("/theaters/<int:theater_id>/screens")
class TheaterScreens(MethodView):
    @screens.etag
    @screens.response(200, s.ScreenSchema(many=True), example=[s.SCREEN])
    @screens.alt_response(404, response="NOT_FOUND")
    @screens.paginate()
    def get(self, theater_id, pagination_parameters):
        """List a theater's screens (without their seats)"""
        return paged(pagination_parameters, catalog.list_screens(theater_id, **page_args(pagination_parameters)))

    @staff_required
    @idempotent
    @screens.arguments(s.ScreenSchema, example=s.SCREEN_IN)
    @screens.response(201, s.ScreenDetailSchema, example=s.SCREEN_DETAIL)
    @screens.alt_response(404, response="NOT_FOUND")
    @screens.alt_response(409, response="CONFLICT")
    def post(self, data, theater_id, actor):
        """Create a screen from a layout of rows, seats and gaps (admin, or a manager of the theater)"""
        screen = catalog.create_screen(theater_id, data, actor=actor)
        return _screen_detail(screen.id), 201


@screens.route("/screens/<int:screen_id>")
class ScreenById(MethodView):
    @screens.etag
    @screens.response(200, s.ScreenDetailSchema, example=s.SCREEN_DETAIL)
    @screens.alt_response(404, response="NOT_FOUND")
    def get(self, screen_id):
        """Get a screen with its seats and their ids"""
        return _screen_detail(screen_id)

    @staff_required
    @screens.arguments(s.ScreenPatchSchema, example={"name": "Salle 1 (Dolby)"})
    @screens.response(200, s.ScreenDetailSchema, example=s.SCREEN_DETAIL)
    @screens.alt_response(404, response="NOT_FOUND")
    @screens.alt_response(409, response="CONFLICT", description="layout_in_use")
    def patch(self, data, screen_id, actor):
        """Rename a screen or replace its layout (admin, or a manager of its theater)

        Seats keeping their label keep their id."""
        catalog.update_screen(screen_id, data, actor=actor)
        return _screen_detail(screen_id)

    @staff_required
    @screens.response(204)
    @screens.alt_response(404, response="NOT_FOUND")
    @screens.alt_response(409, response="CONFLICT", description="in_use: it has showtimes")
    def delete(self, screen_id, actor):
        """Delete a screen that has no showtimes (admin, or a manager of the screen's theater)"""
        catalog.delete_screen(screen_id, actor=actor)


# --- movies -----------------------------------------------------------------

@movies.route("")
class Movies(MethodView):
    @movies.etag
    @movies.arguments(s.MovieQuerySchema, location="query")
    @movies.response(200, s.MovieSchema(many=True), example=[s.MOVIE])
    @movies.paginate()
    def get(self, args, pagination_parameters):
        """Search movies by title, genre, language, city and date"""
        filters = dict(args, **page_args(pagination_parameters))
        filters["day"] = filters.pop("date", None)

        def compute():
            items, total = catalog.list_movies(**filters)
            return [s.MovieSchema(many=True).dump(items), total]

        return paged(pagination_parameters, catalog.cached("movies", filters, compute))

    @admin_required
    @idempotent
    @movies.arguments(s.MovieSchema, example=s.MOVIE_IN)
    @movies.response(201, s.MovieSchema, example=s.MOVIE)
    def post(self, data):
        """Add a movie"""
        return catalog.create_movie(data, actor=current_actor())


@movies.route("/<int:movie_id>")
class MovieById(MethodView):
    @movies.etag
    @movies.response(200, s.MovieSchema, example=s.MOVIE)
    @movies.alt_response(404, response="NOT_FOUND")
    def get(self, movie_id):
        """Get a movie"""
        return catalog.cached("movie", movie_id, lambda: s.MovieSchema().dump(catalog.get_movie(movie_id)))

    @admin_required
    @movies.arguments(s.MoviePatchSchema, example={"rating": "R", "duration_minutes": 171})
    @movies.response(200, s.MovieSchema, example=s.MOVIE)
    @movies.alt_response(404, response="NOT_FOUND")
    @movies.alt_response(409, response="CONFLICT", description="showtime_overlap after a longer duration")
    def patch(self, data, movie_id):
        """Update a movie (a new duration moves its showtimes' end times)"""
        return catalog.update_movie(movie_id, data, actor=current_actor())

    @admin_required
    @movies.response(204)
    @movies.alt_response(404, response="NOT_FOUND")
    @movies.alt_response(409, response="CONFLICT", description="in_use: it has showtimes")
    def delete(self, movie_id):
        """Delete a movie that has no showtimes"""
        catalog.delete_movie(movie_id, actor=current_actor())


# --- showtimes --------------------------------------------------------------

def _with_seats_available(items: list[dict]) -> list[dict]:
    """The live part on top of cached showtimes: never stale by a cache."""
    available = seats.seats_available([item["id"] for item in items])
    return [{**item, "seats_available": available[item["id"]]} for item in items]


def _showtime_out(showtime_id: int) -> dict:
    item = catalog.cached("showtime", showtime_id, lambda: s.ShowtimeSchema().dump(
        catalog.showtime_details([catalog.get_showtime(showtime_id)])[0]))
    return _with_seats_available([item])[0]


@showtimes.route("")
class Showtimes(MethodView):
    @showtimes.etag
    @showtimes.arguments(s.ShowtimeQuerySchema, location="query")
    @showtimes.response(200, s.ShowtimeSchema(many=True), example=[s.SHOWTIME])
    @showtimes.paginate()
    def get(self, args, pagination_parameters):
        """List showtimes by movie, theater, city and local date, soonest first"""
        filters = dict(args, **page_args(pagination_parameters))
        filters["day"] = filters.pop("date", None)

        def compute():
            items, total = catalog.list_showtimes(**filters)
            return [s.ShowtimeSchema(many=True).dump(catalog.showtime_details(items)), total]

        items, total = catalog.cached("showtimes", filters, compute)
        return paged(pagination_parameters, (_with_seats_available(items), total))

    @staff_required
    @idempotent
    @showtimes.arguments(s.ShowtimeSchema, example=s.SHOWTIME_IN)
    @showtimes.response(201, s.ShowtimeSchema, example=s.SHOWTIME)
    @showtimes.alt_response(409, response="CONFLICT", description="showtime_overlap")
    def post(self, data, actor):
        """Schedule a movie on a screen (admin, or a manager of the screen's theater)

        No overlap with another showtime on that screen."""
        return _showtime_out(catalog.create_showtime(data, actor=actor).id)


@showtimes.route("/<int:showtime_id>")
class ShowtimeById(MethodView):
    @showtimes.etag
    @showtimes.response(200, s.ShowtimeSchema, example=s.SHOWTIME)
    @showtimes.alt_response(404, response="NOT_FOUND")
    def get(self, showtime_id):
        """Get a showtime with its movie, theater, city, local start and seats available"""
        return _showtime_out(showtime_id)

    @staff_required
    @showtimes.arguments(s.ShowtimePatchSchema, example={"prices": {**s.PRICES, "premium": 1500}})
    @showtimes.response(200, s.ShowtimeSchema, example=s.SHOWTIME)
    @showtimes.alt_response(404, response="NOT_FOUND")
    @showtimes.alt_response(409, response="CONFLICT", description="showtime_overlap")
    def patch(self, data, showtime_id, actor):
        """Move or re-price a showtime (admin, or a manager of its theater)

        Moving it to a screen of another theater needs that theater too."""
        return _showtime_out(catalog.update_showtime(showtime_id, data, actor=actor).id)

    @staff_required
    @showtimes.response(204)
    @showtimes.alt_response(404, response="NOT_FOUND")
    @showtimes.alt_response(409, response="CONFLICT", description="in_use: it has bookings")
    def delete(self, showtime_id, actor):
        """Delete a showtime without bookings (admin, or a manager of its theater)"""
        catalog.delete_showtime(showtime_id, actor=actor)


@showtimes.route("/<int:showtime_id>/seats")
class ShowtimeSeats(MethodView):
    @showtimes.etag
    @showtimes.response(200, s.SeatMapSchema, example=s.SEAT_MAP)
    @showtimes.alt_response(404, response="NOT_FOUND")
    def get(self, showtime_id):
        """The seat map: every seat with its price and live status, and the version it reflects
        (follow changes from there on /seats/events; cheap to poll with ETags)"""
        head, seat_ids, categories, fragments = _seat_map_template(showtime_id)
        version, statuses, prices = seats.priced_seats_now(showtime_id)
        price_of = {category: json.dumps(prices.get(category)) for category in set(categories)}
        body = "".join((head, ",".join(
            f'{fragment}{price_of[category]},"status":"{statuses.get(seat_id, "available")}"}}'
            for seat_id, category, fragment in zip(seat_ids, categories, fragments, strict=True)),
            f'],"version":"{version}"}}')).encode()
        showtimes.set_etag(hashlib.sha1(body).hexdigest())
        return Response(body, mimetype="application/json")


@showtimes.route("/<int:showtime_id>/blocked-seats")
class ShowtimeBlockedSeats(MethodView):
    @staff_required
    @showtimes.response(200, s.BlockedSeatsSchema, example=s.BLOCKED_SEATS)
    @showtimes.alt_response(404, response="NOT_FOUND")
    def get(self, showtime_id, actor):
        """Seats taken out of sale for this showtime, in layout order (admin, or a manager of its theater)"""
        return blocked_seats.list_blocked(showtime_id, actor=actor)

    @staff_required
    @idempotent
    @showtimes.arguments(s.BlockSeatsRequestSchema, example=s.BLOCK_SEATS_IN)
    @showtimes.response(201, s.BlockedSeatsSchema, example=s.BLOCKED_SEATS)
    @showtimes.alt_response(404, response="NOT_FOUND")
    @showtimes.alt_response(409, response="CONFLICT",
                            description="seats_unavailable (with seat_ids: held, booked or blocked already; "
                                        "none were blocked), showtime_started")
    def post(self, data, showtime_id, actor):
        """Take free seats out of sale for this showtime (admin, or a manager of its theater)

        All or none; shown as blocked, never held."""
        return blocked_seats.block(showtime_id, data["seat_ids"], data.get("reason"), actor=actor)


@showtimes.route("/<int:showtime_id>/blocked-seats/<int:seat_id>")
class ShowtimeBlockedSeat(MethodView):
    @staff_required
    @showtimes.response(204)
    @showtimes.alt_response(404, response="NOT_FOUND", description="not_found: no such showtime, or the seat is "
                                                                   "not blocked for it")
    def delete(self, showtime_id, seat_id, actor):
        """Put a blocked seat back on sale (admin, or a manager of its theater)"""
        blocked_seats.unblock(showtime_id, seat_id, actor=actor)


def _seat_map_template(showtime_id: int) -> tuple[str, list[int], list[str], list[str]]:
    """The static part of a seat map as JSON fragments, each seat's ending where its
    price (which follows the price rules) and status go. Memoised in-process under the
    cache's generations (exact)."""
    def compute():
        seat_map = s.SeatMapSchema().dump(catalog.seat_map(showtime_id))
        head = json.dumps({"showtime_id": seat_map["showtime_id"], "currency": seat_map["currency"],
                           "focal_point": seat_map["focal_point"]}, separators=(",", ":"))[:-1] + ',"seats":['
        fragments = []
        for seat in seat_map["seats"]:
            fields = {k: v for k, v in seat.items() if k not in ("status", "price_cents")}
            fragments.append(json.dumps(fields, separators=(",", ":"))[:-1] + ',"price_cents":')
        return [head, [seat["id"] for seat in seat_map["seats"]], [seat["category"] for seat in seat_map["seats"]],
                fragments]

    return catalog.cached("seatmap-template-priced", showtime_id, compute, local=True)
