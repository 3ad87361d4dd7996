"""The GraphQL schema: types over the same services and the same REST dumps, so a
field here means what it means in REST. Arguments are checked by REST's own
marshmallow schemas (the same rules, the same ``errors`` by field path)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

import strawberry
from flask import url_for
from marshmallow import ValidationError
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache

from app.api import schemas as s
from app.api.graphql.context import Batch, Context
from app.api.graphql.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_TOKENS, QueryLimits
from app.api.problems import flatten_validation_messages, validation_detail
from app.api.waiting_room import queue_url
from app.models import Reservation as ReservationModel
from app.models import ReservationStatus
from app.services import auth, booking, catalog, errors

Info = strawberry.Info[Context, None]


def _build(cls, data: dict[str, Any]):
    """A GraphQL object from a REST dump: the fields its type declares."""
    return cls(**{field.name: data.get(field.name) for field in dataclasses.fields(cls) if field.init})


def _loaded(info: Info, loader: Batch, key: int, build: Callable[[Any], Any]) -> Any:
    """The object ``key`` of a request's loader as a GraphQL object (None when there is
    none), built once per request: fifty showtimes of one movie dump it once."""
    built = info.context.built
    if (loader, key) not in built:
        found = loader.get(key)
        built[loader, key] = None if found is None else build(found)
    return built[loader, key]


def _load(schema, data: dict) -> dict:
    """``data`` through REST's input schema: its rules, its 422 (``validation_error``
    with ``errors`` by field path, REST's names)."""
    try:
        return schema.load({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        flat = flatten_validation_messages(exc.messages)
        raise errors.Invalid(validation_detail(flat), errors=flat) from exc


def _id(value: strawberry.ID | None, field: str) -> int | None:
    """An ``ID`` argument as the integer id REST takes (``validation_error`` otherwise)."""
    if value is None:
        return None
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 1 <= int(text[:20]) <= 2**63 - 1:
        raise errors.Invalid(f"{field}: not a valid id", errors={field: ["Not a valid id."]})
    return int(text)


def _page(page: int, page_size: int) -> dict[str, int]:
    problems = {}
    if not 1 <= page <= 1_000_000:
        problems["page"] = ["Must be between 1 and 1000000."]
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        problems["pageSize"] = [f"Must be between 1 and {MAX_PAGE_SIZE}."]
    if problems:
        raise errors.Invalid(validation_detail(problems), errors=problems)
    return {"page": page, "page_size": page_size}


# --- the catalog ----------------------------------------------------------------

@strawberry.type
class City:
    id: strawberry.ID
    name: str
    country: str | None
    timezone: str


@strawberry.type
class Theater:
    id: strawberry.ID
    name: str
    address: str
    latitude: float | None
    longitude: float | None
    distance_km: float | None = strawberry.field(description="With `near`: kilometres from there")
    city_id: strawberry.Private[int]

    @strawberry.field
    def city(self, info: Info) -> City | None:
        return _city(info, self.city_id)


def _city(info: Info, city_id: int) -> City | None:
    return _loaded(info, info.context.loaders.cities, city_id, lambda city: _build(City, s.CitySchema().dump(city)))


@strawberry.type
class Movie:
    id: strawberry.ID
    title: str
    duration_minutes: int
    description: str | None
    genres: list[str]
    language: str | None
    rating: str | None
    release_date: str | None
    poster_url: str | None
    average_rating: float | None
    review_count: int | None


def _movie(movie) -> Movie:
    return _build(Movie, s.MovieSchema().dump(movie))


def _theater(theater, distance_km: float | None = None) -> Theater:
    out = s.TheaterSchema().dump(theater)
    return _build(Theater, {**out, "distance_km": None if distance_km is None else round(float(distance_km), 3)})


@strawberry.type
class Price:
    category: str
    price_cents: int


@strawberry.type
class Seat:
    id: strawberry.ID
    label: str
    row: str
    number: int
    category: str
    price_cents: int | None
    status: str = strawberry.field(description="available, held, booked or blocked")
    x: int
    y: int


@strawberry.type
class SeatMap:
    showtime_id: strawberry.ID
    currency: str
    version: str = strawberry.field(description="Follow changes from here on /api/v1/showtimes/{id}/seats/events")
    seats: list[Seat]


@strawberry.type
class Showtime:
    id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    starts_at_local: str = strawberry.field(description="In the city's time zone, with its offset")
    currency: str
    orphan_seats: str
    prices: list[Price]
    movie_id: strawberry.Private[int]
    theater_id: strawberry.Private[int]
    city_id: strawberry.Private[int]

    @strawberry.field
    def movie(self, info: Info) -> Movie | None:
        return _loaded(info, info.context.loaders.movies, self.movie_id, _movie)

    @strawberry.field
    def theater(self, info: Info) -> Theater | None:
        return _loaded(info, info.context.loaders.theaters, self.theater_id, _theater)

    @strawberry.field
    def city(self, info: Info) -> City | None:
        return _city(info, self.city_id)

    @strawberry.field(description="Seats a customer could hold now")
    def seats_available(self, info: Info) -> int:
        return info.context.loaders.seats_available.get(int(self.id)) or 0

    @strawberry.field(description="Every seat with its price and live status")
    def seat_map(self, info: Info) -> SeatMap | None:
        seat_map = info.context.loaders.seat_maps.get(int(self.id))
        if seat_map is None:
            return None
        return SeatMap(showtime_id=seat_map["showtime_id"], currency=seat_map["currency"],
                       version=seat_map["version"], seats=[_build(Seat, seat) for seat in seat_map["seats"]])


def _showtime(detail: dict) -> Showtime:
    return Showtime(
        id=detail["id"], starts_at=detail["starts_at"], ends_at=detail["ends_at"],
        starts_at_local=detail["starts_at_local"], currency=detail["currency"], orphan_seats=detail["orphan_seats"],
        prices=[Price(category=k, price_cents=v) for k, v in sorted(detail["prices"].items())],
        movie_id=detail["movie_id"], theater_id=detail["theater"]["id"], city_id=detail["city"]["id"])


def _showtimes(info: Info, showtimes: list) -> list[Showtime]:
    details = catalog.showtime_details(showtimes)
    info.context.loaders.announce_showtimes(details)
    return [_showtime(detail) for detail in details]


# --- the caller's own ----------------------------------------------------------

@strawberry.type
class User:
    id: strawberry.ID
    email: str
    name: str
    role: str
    created_at: str


@strawberry.type
class Hold:
    id: strawberry.ID
    showtime_id: strawberry.ID
    seat_ids: list[strawberry.ID]
    expires_at: str
    total_cents: int | None = strawberry.field(default=None, description="The seats' prices, fixed by the hold")
    currency: str | None = None


@strawberry.type
class ReservationSeat:
    id: strawberry.ID
    label: str
    category: str
    price_cents: int


@strawberry.type
class Ticket:
    id: strawberry.ID
    code: str
    seat_label: str
    status: str
    checked_in_at: str | None
    qr_url: str
    qr_svg_url: str


@strawberry.type
class Reservation:
    id: strawberry.ID
    status: str
    showtime_id: strawberry.ID
    seats: list[ReservationSeat]
    total_cents: int
    currency: str
    expires_at: str | None
    payment_status: str
    failure_reason: str | None
    created_at: str
    confirmed_at: str | None
    cancelled_at: str | None
    discount_cents: int = 0

    @strawberry.field
    def showtime(self, info: Info) -> Showtime | None:
        detail = info.context.loaders.showtimes.get(int(self.showtime_id))
        return None if detail is None else _showtime(detail)

    @strawberry.field(description="One ticket a seat once confirmed (empty before)")
    def tickets(self, info: Info) -> list[Ticket]:
        if self.status != "confirmed":
            return []
        # this reservation (and its page's) came through the owner's check
        return [Ticket(id=t.id, code=t.code, seat_label=t.seat_label, status=t.status,
                       checked_in_at=t.checked_in_at.isoformat() if t.checked_in_at else None,
                       qr_url=url_for("tickets.qr_png", code=t.code), qr_svg_url=url_for("tickets.qr_svg", code=t.code))
                for t in info.context.loaders.tickets.get(int(self.id))]


def _reservation_data(reservations: list[ReservationModel]) -> list[dict]:
    """Reservations as REST dumps them (JSON values, so an idempotent replay is the same)."""
    return s.ReservationSchema(many=True, exclude=("links",)).dump(booking.reservation_views(reservations))


def _reservation(data: dict) -> Reservation:
    return _build(Reservation, {**data, "seats": [_build(ReservationSeat, seat) for seat in data["seats"]]})


def _hold(data: dict) -> Hold:
    return _build(Hold, data)


# --- pages ------------------------------------------------------------------------

@strawberry.type
class PageInfo:
    total: int
    page: int
    page_size: int
    total_pages: int


def _page_info(args: dict[str, int], total: int) -> PageInfo:
    return PageInfo(total=total, page=args["page"], page_size=args["page_size"],
                    total_pages=(total + args["page_size"] - 1) // args["page_size"])


@strawberry.type
class MoviePage:
    items: list[Movie]
    page_info: PageInfo


@strawberry.type
class CityPage:
    items: list[City]
    page_info: PageInfo


@strawberry.type
class TheaterPage:
    items: list[Theater]
    page_info: PageInfo


@strawberry.type
class ShowtimePage:
    items: list[Showtime]
    page_info: PageInfo


@strawberry.type
class ReservationPage:
    items: list[Reservation]
    page_info: PageInfo


PAGE = strawberry.argument(description="1-based")
PAGE_SIZE = strawberry.argument(description=f"At most {MAX_PAGE_SIZE}")


@strawberry.type
class Query:
    @strawberry.field(description="Movies by title, genre, language, city and local date (as GET /movies)")
    def movies(self, q: str | None = None, genre: str | None = None, language: str | None = None,
               city_id: strawberry.ID | None = None, date: str | None = None,
               page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> MoviePage:
        paging = _page(page, page_size)
        filters = _load(s.MovieQuerySchema(), {"q": q, "genre": genre, "language": language,
                                                "city_id": _id(city_id, "city_id"), "date": date})
        filters["day"] = filters.pop("date", None)
        items, total = catalog.list_movies(**paging, **filters)
        return MoviePage(items=[_movie(m) for m in items], page_info=_page_info(paging, total))

    @strawberry.field
    def movie(self, id: strawberry.ID) -> Movie | None:  # noqa: A002 - GraphQL's name
        return _movie(catalog.get_movie(_id(id, "id")))

    @strawberry.field
    def cities(self, q: str | None = None, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> CityPage:
        paging = _page(page, page_size)
        items, total = catalog.list_cities(**paging, **_load(s.CityQuerySchema(), {"q": q}))
        return CityPage(items=[_build(City, c) for c in s.CitySchema(many=True).dump(items)],
                        page_info=_page_info(paging, total))

    @strawberry.field(description="Theaters by city, or nearest first with `near: \"lat,lng\"` within `radiusKm`")
    def theaters(self, info: Info, city_id: strawberry.ID | None = None, near: str | None = None,
                 radius_km: float | None = None, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> TheaterPage:
        paging = _page(page, page_size)
        args = _load(s.TheaterQuerySchema(), {"city_id": _id(city_id, "city_id"), "near": near,
                                              "radius_km": radius_km})
        rows, total = catalog.list_theaters(city_id=args.get("city_id"), near=args.get("near"),
                                            radius_km=args["radius_km"], **paging)
        info.context.loaders.cities.want(theater.city_id for theater, _ in rows)
        return TheaterPage(items=[_theater(t, d) for t, d in rows], page_info=_page_info(paging, total))

    @strawberry.field(description="Showtimes by movie, theater, city and local date, soonest first "
                                  "(as GET /showtimes)")
    def showtimes(self, info: Info, movie_id: strawberry.ID | None = None, theater_id: strawberry.ID | None = None,
                  city_id: strawberry.ID | None = None, date: str | None = None, starts_after: str | None = None,
                  starts_before: str | None = None, page: int = 1,
                  page_size: int = DEFAULT_PAGE_SIZE) -> ShowtimePage:
        paging = _page(page, page_size)
        filters = _load(s.ShowtimeQuerySchema(), {
            "movie_id": _id(movie_id, "movie_id"), "theater_id": _id(theater_id, "theater_id"),
            "city_id": _id(city_id, "city_id"), "date": date, "starts_after": starts_after,
            "starts_before": starts_before})
        filters["day"] = filters.pop("date", None)
        items, total = catalog.list_showtimes(**paging, **filters)
        return ShowtimePage(items=_showtimes(info, items), page_info=_page_info(paging, total))

    @strawberry.field
    def showtime(self, info: Info, id: strawberry.ID) -> Showtime | None:  # noqa: A002
        return _showtimes(info, [catalog.get_showtime(_id(id, "id"))])[0]

    @strawberry.field(description="The signed-in caller")
    def me(self, info: Info) -> User:
        return _build(User, s.UserSchema().dump(auth.get_profile(info.context.user_id())))

    @strawberry.field(description="The caller's reservations, newest first")
    def reservations(self, info: Info, status: str | None = None, page: int = 1,
                     page_size: int = DEFAULT_PAGE_SIZE) -> ReservationPage:
        paging = _page(page, page_size)
        args = _load(s.ReservationQuerySchema(), {"status": status})
        items, total = booking.list_reservations(info.context.user_id(), **paging, status=args.get("status"))
        info.context.loaders.showtimes.want(r.showtime_id for r in items)
        info.context.loaders.tickets.want(r.id for r in items if r.status == ReservationStatus.CONFIRMED)
        return ReservationPage(items=[_reservation(r) for r in _reservation_data(items)],
                               page_info=_page_info(paging, total))

    @strawberry.field(description="One of the caller's reservations (null and not_found for anyone else's)")
    def reservation(self, info: Info, id: strawberry.ID) -> Reservation | None:  # noqa: A002
        reservation = booking.get_reservation(info.context.user_id(), _id(id, "id"), is_admin=info.context.is_admin())
        return _reservation(_reservation_data([reservation])[0])


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Hold seats for a few minutes: `seatIds` (all or none), or the best available "
                                     "`quantity` (with `category`, `accessible`). While the waiting room is on, "
                                     "send the `Admission-Token` header")
    def hold(self, info: Info, showtime_id: strawberry.ID, seat_ids: list[strawberry.ID] | None = None,
             quantity: int | None = None, category: str | None = None, accessible: int | None = None) -> Hold:
        context = info.context
        user_id, showtime = context.user_id(), _id(showtime_id, "showtime_id")
        ids = None if seat_ids is None else [_id(seat, f"seat_ids.{i}") for i, seat in enumerate(seat_ids)]
        # With seat_ids REST's `accessible` is a boolean; with quantity a count.
        wanted = {"seat_ids": ids, "quantity": quantity, "category": category,
                  "accessible": accessible if quantity is not None or accessible is None else bool(accessible)}
        data = _load(s.HoldRequestSchema(), wanted)
        token = context.request.headers.get("Admission-Token")

        def run() -> dict:
            try:
                if "quantity" in data:
                    hold = booking.hold_best_available(user_id, showtime, data["quantity"],
                                                       category=data.get("category"),
                                                       accessible=int(data.get("accessible", 0)), admission_token=token)
                else:
                    hold = booking.hold_seats(user_id, showtime, data["seat_ids"],
                                              accessible=data.get("accessible", False), admission_token=token)
            except errors.AdmissionRequired as refused:
                refused.extra["queue_url"] = queue_url(showtime)
                raise
            return s.HoldSchema().dump(hold)

        return _hold(context.idempotent(f"hold {showtime}", wanted, run))

    @strawberry.mutation(description="Release one of the caller's holds: its seats are free at once")
    def release_hold(self, info: Info, id: strawberry.ID) -> bool:  # noqa: A002
        booking.release_hold(info.context.user_id(), str(id))
        return True

    @strawberry.mutation(description="Reserve the seats of a live hold at the prices it showed (less a voucher's "
                                     "discount); payment follows in the background")
    def reserve(self, info: Info, hold_id: strawberry.ID, payment_token: str,
                voucher_code: str | None = None) -> Reservation:
        context = info.context
        user_id = context.user_id()
        wanted = {"hold_id": str(hold_id), "payment_token": payment_token}
        if voucher_code is not None:
            wanted["voucher_code"] = voucher_code
        data = _load(s.ReservationRequestSchema(), wanted)

        def run() -> dict:
            return s.ReservationSchema(exclude=("links",)).dump(booking.reserve(
                user_id, data["hold_id"], data["payment_token"], voucher_code=data.get("voucher_code")))

        return _reservation(context.idempotent("reserve", data, run))


class MarqueeSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Nothing: the view logs what deserves it (unexpected errors), not every refusal."""


schema = MarqueeSchema(
    query=Query, mutation=Mutation,
    # Parsed and validated documents are kept (clients send the same few queries again and
    # again); the limits still apply to each new one.
    extensions=[lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS), lambda: ParserCache(maxsize=256),
                lambda: AddValidationRules([QueryLimits]), lambda: ValidationCache(maxsize=256)],
)
