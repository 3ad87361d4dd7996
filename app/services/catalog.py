"""The catalog: cities, theaters, screens and their seats, movies, showtimes.

Every write is one unit of work that then invalidates the cached reads it
changes (``INVALIDATES``); every cached read names what it depends on
(``CACHED_READS``), so both halves of the cache's contract live here. Rules that
two admins could race on are enforced by PostgreSQL itself (the showtime
exclusion constraint, unique keys, foreign keys with RESTRICT), and the
resulting integrity errors become clean conflicts here.

Every write takes the ``actor`` (a ``staff.Actor``; ``None`` only for the system
itself: demo seeding) and is authorized from the object it changes, read under its
lock: cities and movies are chain-wide (admin only, and so is creating a theater);
a theater, its screens and their showtimes are also a manager's of that theater
(``staff.require``). Each write records its audit entry (``_audit``) in its own unit
of work: a write that fails leaves none.
"""
from __future__ import annotations

import math
import zoneinfo
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Date, cast, delete, exists, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from app import db
from app.bootstrap import marquee
from app.models import BlockedSeat, City, Movie, Reservation, Screen, Seat, Showtime, Theater
from app.services import audit, errors, refunds, staff
from app.services.layout import LayoutError, SeatSpec, build_seats, focal_point
from app.services.pagination import page_of

# Which cached namespaces a write of each kind makes stale.
INVALIDATES: dict[str, tuple[str, ...]] = {
    "city": ("movies", "showtimes"),
    "theater": ("movies", "showtimes"),
    "screen": ("screens", "showtimes"),
    "movie": ("movies", "showtimes"),
    "showtime": ("movies", "showtimes"),
}

# What each cached read depends on: a write above that names one of these
# namespaces makes it stale.
CACHED_READS: dict[str, tuple[str, ...]] = {
    "movies": ("movies",),
    "movie": ("movies",),
    "showtimes": ("showtimes",),
    "showtime": ("showtimes",),
    "screen": ("screens",),
    "seatmap-template": ("showtimes", "screens"),
    "seatmap-template-priced": ("showtimes", "screens"),
    "seat-map": ("showtimes", "screens"),
}

EARLIEST_SHOWTIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_SHOWTIME = datetime(2100, 1, 1, tzinfo=timezone.utc)
EARTH_RADIUS_KM = 6371.0088


# --- shared helpers ---------------------------------------------------------

def _get(model, object_id: int, what: str):
    obj = db.session.get(model, object_id)
    if obj is None:
        raise errors.NotFound(f"{what} {object_id} does not exist")
    return obj


def _lock(model, object_id: int, what: str):
    obj = db.session.scalar(select(model).where(model.id == object_id).with_for_update())
    if obj is None:
        raise errors.NotFound(f"{what} {object_id} does not exist")
    return obj


@contextmanager
def _unit_of_work(kind: str, *, deleting: str | None = None):
    """One write (``db.unit_of_work``): any integrity error becomes a domain
    error and nothing is kept; after the commit, the caches it made stale."""
    try:
        with db.unit_of_work():
            yield
    except IntegrityError as exc:
        raise _integrity_error(exc, deleting) from exc
    marquee().cache.invalidate(*INVALIDATES[kind])


# Kinds of catalog objects, as the audit log names them.
AUDITED: dict[type, str] = {City: "city", Theater: "theater", Screen: "screen", Movie: "movie",
                            Showtime: "showtime"}


def _authorize(actor: staff.Actor | None, theater_id: int | None = None) -> None:
    """``Forbidden`` unless ``actor`` is an admin or (with ``theater_id``) a manager
    there; ``None`` is the system (demo seeding), never a request."""
    if actor is not None:
        staff.require(actor, theater_id, "manager")


def _audit(verb: str, obj: Any, actor: staff.Actor | None, before: dict | None = None) -> None:
    """The audit entry of a catalog create or update, in the write's unit of work: the
    whole row after a create; for an update, the columns that changed, before and
    after (``before``: ``audit.snapshot`` taken before the change). Deletes: ``_delete``."""
    kind = AUDITED[type(obj)]
    db.session.flush()  # ids, server defaults and the database's verdict before the entry
    after = audit.snapshot(obj)
    if verb == "update":
        changed = [key for key in after if before.get(key) != after[key]]
        before, after = {k: before[k] for k in changed}, {k: after[k] for k in changed}
    audit.record(f"{kind}.{verb}", actor_id=actor.user_id if actor else None, object_type=kind,
                 object_id=obj.id, before=before, after=after)


def _delete(obj: Any, actor: staff.Actor | None) -> None:
    """Delete and audit: the entry keeps the whole row; the flush makes a refusal of
    the database (RESTRICT) an error before the entry, never after."""
    before = audit.snapshot(obj)
    db.session.delete(obj)
    db.session.flush()
    audit.record(f"{AUDITED[type(obj)]}.delete", actor_id=actor.user_id if actor else None,
                 object_type=AUDITED[type(obj)], object_id=obj.id, before=before)


def screen_theater_id(screen_id: int) -> int | None:
    return db.session.scalar(select(Screen.theater_id).where(Screen.id == screen_id))


def showtime_theater_id(showtime_id: int, *, lock: bool = False) -> int:
    """The theater of a showtime (``NotFound`` for an unknown one). With ``lock``, the
    showtime's row is locked FOR SHARE until the end of the transaction, so it cannot
    move to another screen while the caller acts on the strength of that theater."""
    # The showtime's row alone, then its screen's theater: a join locked FOR SHARE would
    # re-check a row changed meanwhile against the old screen's and find nothing.
    query = select(Showtime.screen_id).where(Showtime.id == showtime_id)
    if lock:
        query = query.with_for_update(read=True)
    screen_id = db.session.scalar(query)
    if screen_id is None:
        raise errors.NotFound(f"Showtime {showtime_id} does not exist")
    return screen_theater_id(screen_id)


def cached(name: str, params: Any, compute: Callable[[], Any], *, local: bool = False) -> Any:
    """A catalog read through the cache (``CACHED_READS`` names what makes it stale)."""
    return marquee().cache.get_or_compute(CACHED_READS[name], name, params, compute, local=local)


def cached_json(name: str, params: Any, compute: Callable[[], Any]) -> bytes:
    """The same, as the stored JSON itself: big bodies go out without a re-dump."""
    return marquee().cache.get_or_compute_json(CACHED_READS[name], name, params, compute)


def _integrity_error(exc: IntegrityError, deleting: str | None) -> errors.DomainError:
    pgcode = getattr(exc.orig, "pgcode", None)
    if pgcode == "23P01":  # exclusion_violation
        return errors.ShowtimeOverlap("Another showtime on this screen overlaps that time")
    if pgcode == "23503":  # foreign_key_violation
        if deleting == "seats":
            return errors.LayoutInUse(
                "Seats of this layout are referenced by bookings; it cannot be replaced"
            )
        return errors.InUse(f"This {deleting or 'object'} is still referenced by other records")
    if pgcode == "23505":  # unique_violation
        return errors.Conflict("An object with these unique fields already exists")
    return errors.Invalid("The change breaks a data constraint")


def _apply(obj: Any, data: dict, fields: Iterable[str]) -> None:
    for name in fields:
        if name in data:
            setattr(obj, name, data[name])


def _invalid(field: str, message: str) -> errors.Invalid:
    return errors.Invalid(message, errors={field: [message]})


def validate_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise _invalid("timezone", f"Unknown IANA time zone: {name!r}") from exc


# --- cities -----------------------------------------------------------------

CITY_FIELDS = ("name", "country", "timezone")


def create_city(data: dict, *, actor: staff.Actor | None) -> City:
    _authorize(actor)
    validate_timezone(data["timezone"])
    with _unit_of_work("city"):
        city = City(**{k: data.get(k) for k in CITY_FIELDS})
        db.session.add(city)
        _audit("create", city, actor)
    return city


def update_city(city_id: int, data: dict, *, actor: staff.Actor | None) -> City:
    _authorize(actor)
    if "timezone" in data:
        validate_timezone(data["timezone"])
    with _unit_of_work("city"):
        city = _lock(City, city_id, "City")
        before = audit.snapshot(city)
        _apply(city, data, CITY_FIELDS)
        _audit("update", city, actor, before)
    return city


def delete_city(city_id: int, *, actor: staff.Actor | None) -> None:
    _authorize(actor)
    with _unit_of_work("city", deleting="city"):
        _delete(_lock(City, city_id, "City"), actor)


def get_city(city_id: int) -> City:
    return _get(City, city_id, "City")


def list_cities(page: int, page_size: int, q: str | None = None) -> tuple[list[City], int]:
    query = select(City)
    if q:
        query = query.where(City.name.ilike(f"%{_escape_like(q)}%", escape="\\"))
    return page_of(query, [City.name, City.id], page, page_size)


# --- theaters ---------------------------------------------------------------

THEATER_FIELDS = ("name", "city_id", "address", "latitude", "longitude", "refund_policy")


def _check_coordinates(theater: Theater) -> None:
    if (theater.latitude is None) != (theater.longitude is None):
        raise _invalid("latitude", "latitude and longitude go together: give both or neither")


def create_theater(data: dict, *, actor: staff.Actor | None) -> Theater:
    """A new theater (chain-wide: admin only)."""
    _authorize(actor)
    data = {**data, "refund_policy": refunds.validated(data.get("refund_policy"))}
    with _unit_of_work("theater"):
        _ensure_exists(City, data["city_id"], "city_id", "city")
        theater = Theater(**{k: data.get(k) for k in THEATER_FIELDS})
        _check_coordinates(theater)
        db.session.add(theater)
        _audit("create", theater, actor)
    return theater


def update_theater(theater_id: int, data: dict, *, actor: staff.Actor | None) -> Theater:
    """An admin's, or a manager's of this theater."""
    if "refund_policy" in data:  # replaced whole (null clears it), never merged
        data = {**data, "refund_policy": refunds.validated(data["refund_policy"])}
    with _unit_of_work("theater"):
        theater = _lock(Theater, theater_id, "Theater")
        _authorize(actor, theater.id)
        before = audit.snapshot(theater)
        if "city_id" in data:
            _ensure_exists(City, data["city_id"], "city_id", "city")
        _apply(theater, data, THEATER_FIELDS)
        _check_coordinates(theater)
        _audit("update", theater, actor, before)
    return theater


def delete_theater(theater_id: int, *, actor: staff.Actor | None) -> None:
    """An admin's, or a manager's of this theater (its roles go with it)."""
    with _unit_of_work("theater", deleting="theater"):
        theater = _lock(Theater, theater_id, "Theater")
        _authorize(actor, theater.id)
        _delete(theater, actor)


def get_theater(theater_id: int) -> Theater:
    return _get(Theater, theater_id, "Theater")


def distance_km_expr(lat: float, lng: float):
    """Great-circle (haversine) distance from a point to each theater, in SQL."""
    rlat, rlng = func.radians(Theater.latitude), func.radians(Theater.longitude)
    dlat, dlng = rlat - math.radians(lat), rlng - math.radians(lng)
    a = func.power(func.sin(dlat / 2), 2) + math.cos(math.radians(lat)) * func.cos(rlat) * func.power(
        func.sin(dlng / 2), 2
    )
    return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(func.least(1.0, a)))


def list_theaters(
    page: int,
    page_size: int,
    city_id: int | None = None,
    near: tuple[float, float] | None = None,
    radius_km: float = 10.0,
) -> tuple[list[tuple[Theater, float | None]], int]:
    """Theaters, optionally of one city and/or within ``radius_km`` of ``near``
    (then nearest first, each with its distance)."""
    if near is None:
        query = select(Theater, literal(None).label("distance_km"))
        order = [Theater.name, Theater.id]
    else:
        lat, lng = near
        distance = distance_km_expr(lat, lng)
        query = select(Theater, distance.label("distance_km")).where(
            Theater.latitude.is_not(None)
        )
        # A bounding box first, so the (latitude, longitude) index does the coarse work.
        dlat = radius_km / 111.0
        query = query.where(Theater.latitude.between(lat - dlat, lat + dlat))
        cos_lat = math.cos(math.radians(lat))
        if cos_lat > 0.01:
            dlng = radius_km / (111.0 * cos_lat)
            if lng - dlng >= -180 and lng + dlng <= 180:
                query = query.where(Theater.longitude.between(lng - dlng, lng + dlng))
        query = query.where(distance <= radius_km)
        order = [distance, Theater.id]
    if city_id is not None:
        query = query.where(Theater.city_id == city_id)
    found, total = page_of(query, order, page, page_size, rows=True)
    return [(row[0], row[1]) for row in found], total


# --- screens and seats ------------------------------------------------------

def _seat_rows(screen_id: int, specs) -> list[dict]:
    return [
        {
            "screen_id": screen_id,
            "row_label": s.row_label,
            "number": s.number,
            "label": s.label,
            "category": s.category,
            "row_index": s.row_index,
            "col_index": s.col_index,
        }
        for s in specs
    ]


def _build(layout: dict):
    try:
        return build_seats(layout)
    except LayoutError as exc:
        raise errors.Invalid("The layout is not valid", errors={"layout": exc.messages}) from exc


def create_screen(theater_id: int, data: dict, *, actor: staff.Actor | None) -> Screen:
    """An admin's, or a manager's of the theater."""
    specs = _build(data["layout"])
    with _unit_of_work("screen"):
        _get(Theater, theater_id, "Theater")
        _authorize(actor, theater_id)
        screen = Screen(
            theater_id=theater_id, name=data["name"], layout=data["layout"], seat_count=len(specs)
        )
        db.session.add(screen)
        db.session.flush()
        db.session.execute(insert(Seat), _seat_rows(screen.id, specs))
        _audit("create", screen, actor)
    return screen


def update_screen(screen_id: int, data: dict, *, actor: staff.Actor | None) -> Screen:
    """Rename and/or replace the layout. Seats whose label survives keep their id;
    removed seats are deleted, which bookings referencing them forbid (409). An
    admin's, or a manager's of the screen's theater."""
    specs = _build(data["layout"]) if "layout" in data else None
    with _unit_of_work("screen", deleting="seats"):
        screen = _lock(Screen, screen_id, "Screen")
        _authorize(actor, screen.theater_id)
        before = audit.snapshot(screen)
        if "name" in data:
            screen.name = data["name"]
        if specs is not None:
            _replace_seats(screen, specs)
            screen.layout, screen.seat_count = data["layout"], len(specs)
        _audit("update", screen, actor, before)
    return screen


def _replace_seats(screen: Screen, specs) -> None:
    _check_future_prices(screen.id, {s.category for s in specs})
    existing = {s.label: s for s in db.session.scalars(select(Seat).where(Seat.screen_id == screen.id))}
    wanted = {s.label: s for s in specs}
    removed = [seat.id for label, seat in existing.items() if label not in wanted]
    if removed:
        db.session.execute(delete(Seat).where(Seat.id.in_(removed)))
    for label, spec in wanted.items():
        seat = existing.get(label)
        if seat is not None:
            seat.category, seat.row_index, seat.col_index = spec.category, spec.row_index, spec.col_index
    new = [spec for label, spec in wanted.items() if label not in existing]
    if new:
        db.session.execute(insert(Seat), _seat_rows(screen.id, new))


def _check_future_prices(screen_id: int, categories: set[str]) -> None:
    """Showtimes yet to start on this screen must price every category it will have."""
    now = datetime.now(timezone.utc)
    for showtime in db.session.scalars(
        select(Showtime).where(Showtime.screen_id == screen_id, Showtime.starts_at > now)
    ):
        missing = categories - set(showtime.prices)
        if missing:
            raise errors.Conflict(
                f"Showtime {showtime.id} has no price for {', '.join(sorted(missing))}; "
                "update its prices first",
                showtime_id=showtime.id,
            )


def delete_screen(screen_id: int, *, actor: staff.Actor | None) -> None:
    """An admin's, or a manager's of the screen's theater."""
    with _unit_of_work("screen", deleting="screen"):
        screen = _lock(Screen, screen_id, "Screen")
        _authorize(actor, screen.theater_id)
        _delete(screen, actor)


def get_screen(screen_id: int) -> Screen:
    return _get(Screen, screen_id, "Screen")


def screen_seats(screen_id: int) -> list[Seat]:
    return list(
        db.session.scalars(
            select(Seat).where(Seat.screen_id == screen_id).order_by(Seat.row_index, Seat.col_index)
        )
    )


def list_screens(theater_id: int, page: int, page_size: int) -> tuple[list[Screen], int]:
    _get(Theater, theater_id, "Theater")
    return page_of(select(Screen).where(Screen.theater_id == theater_id), [Screen.name, Screen.id], page, page_size)


# --- movies -----------------------------------------------------------------

MOVIE_FIELDS = (
    "title", "duration_minutes", "description", "genres", "language", "rating",
    "release_date", "poster_url",
)


def _normalize_genres(data: dict) -> None:
    if data.get("genres") is not None:
        data["genres"] = sorted({g.strip().lower() for g in data["genres"] if g.strip()})


def create_movie(data: dict, *, actor: staff.Actor | None) -> Movie:
    _authorize(actor)
    _normalize_genres(data)
    with _unit_of_work("movie"):
        movie = Movie(**{k: data[k] for k in MOVIE_FIELDS if k in data})
        db.session.add(movie)
        _audit("create", movie, actor)
    return movie


def update_movie(movie_id: int, data: dict, *, actor: staff.Actor | None) -> Movie:
    """Chain-wide (admin only): a new duration moves the showtimes of every theater."""
    _authorize(actor)
    _normalize_genres(data)
    with _unit_of_work("movie"):
        movie = _lock(Movie, movie_id, "Movie")
        before = audit.snapshot(movie)
        _apply(movie, data, MOVIE_FIELDS)
        _audit("update", movie, actor, before)
        if "duration_minutes" in data:
            # Showtimes end when the movie does: a longer cut may now overlap (409).
            db.session.execute(
                update(Showtime)
                .where(Showtime.movie_id == movie_id)
                .values(ends_at=Showtime.starts_at + func.make_interval(0, 0, 0, 0, 0, data["duration_minutes"]))
            )
    return movie


def delete_movie(movie_id: int, *, actor: staff.Actor | None) -> None:
    _authorize(actor)
    with _unit_of_work("movie", deleting="movie"):
        _delete(_lock(Movie, movie_id, "Movie"), actor)


def get_movie(movie_id: int) -> Movie:
    return _get(Movie, movie_id, "Movie")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _local_date_window(day: date):
    """UTC bounds that contain every instant whose local date (any zone) is ``day``."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) - timedelta(hours=14)
    return start, start + timedelta(hours=14 + 24 + 14)


def _showtimes_in(city_id: int | None, day: date | None, theater_id: int | None = None):
    """A WHERE-able selection of showtimes joined to their theater and city."""
    query = (
        select(Showtime.id)
        .join(Screen, Screen.id == Showtime.screen_id)
        .join(Theater, Theater.id == Screen.theater_id)
    )
    if city_id is not None:
        query = query.where(Theater.city_id == city_id)
    if theater_id is not None:
        query = query.where(Theater.id == theater_id)
    if day is not None:
        lo, hi = _local_date_window(day)
        query = query.join(City, City.id == Theater.city_id).where(
            Showtime.starts_at >= lo,
            Showtime.starts_at < hi,
            cast(func.timezone(City.timezone, Showtime.starts_at), Date) == day,
        )
    return query


def list_movies(
    page: int,
    page_size: int,
    q: str | None = None,
    genre: str | None = None,
    language: str | None = None,
    city_id: int | None = None,
    day: date | None = None,
) -> tuple[list[Movie], int]:
    """Movies matching a title search and filters. With ``city_id`` and/or
    ``date``: movies that have a showtime there (then, from now on, unless a
    date is given), in the city's local time."""
    query = select(Movie)
    if q:
        query = query.where(Movie.title.ilike(f"%{_escape_like(q)}%", escape="\\"))
    if genre:
        query = query.where(Movie.genres.contains([genre.strip().lower()]))
    if language:
        query = query.where(func.lower(Movie.language) == language.strip().lower())
    if city_id is not None or day is not None:
        shows = _showtimes_in(city_id, day).where(Showtime.movie_id == Movie.id)
        if day is None:
            shows = shows.where(Showtime.starts_at >= func.now())
        query = query.where(exists(shows))
    return page_of(query, [Movie.title, Movie.id], page, page_size)


# --- showtimes --------------------------------------------------------------

def _ensure_exists(model, object_id: int, field: str, what: str) -> None:
    if db.session.get(model, object_id) is None:
        raise _invalid(field, f"Unknown {what}: {object_id}")


def _check_starts_at(starts_at: datetime) -> None:
    if starts_at.tzinfo is None:
        raise _invalid("starts_at", "starts_at needs a UTC offset, e.g. 2026-12-01T19:30:00+00:00")
    if not EARLIEST_SHOWTIME <= starts_at < LATEST_SHOWTIME:
        raise _invalid("starts_at", "starts_at must be between 2000 and 2100")


def _check_prices(screen_id: int, prices: dict[str, int]) -> None:
    needed = set(db.session.scalars(select(Seat.category).where(Seat.screen_id == screen_id).distinct()))
    missing = needed - set(prices)
    if missing:
        raise _invalid("prices", f"Missing prices for seat categories: {', '.join(sorted(missing))}")


def _schedule(showtime: Showtime) -> None:
    movie = _get(Movie, showtime.movie_id, "Movie")
    _check_starts_at(showtime.starts_at)
    showtime.ends_at = showtime.starts_at + timedelta(minutes=movie.duration_minutes)


def create_showtime(data: dict, *, actor: staff.Actor | None) -> Showtime:
    """An admin's, or a manager's of the screen's theater."""
    with _unit_of_work("showtime"):
        _ensure_exists(Movie, data["movie_id"], "movie_id", "movie")
        _ensure_exists(Screen, data["screen_id"], "screen_id", "screen")
        _authorize(actor, screen_theater_id(data["screen_id"]))
        _check_prices(data["screen_id"], data["prices"])
        _schedules_of(data["screen_id"])
        showtime = Showtime(
            movie_id=data["movie_id"],
            screen_id=data["screen_id"],
            starts_at=data["starts_at"],
            prices=data["prices"],
            currency=data["currency"],
            orphan_seats=data.get("orphan_seats", "prevent"),
        )
        _schedule(showtime)
        db.session.add(showtime)
        _audit("create", showtime, actor)
    return showtime


# pg_advisory_xact_lock key, with a screen id: one showtime write to a screen's schedule at a time
SCHEDULE_LOCK = 0x6D71_0005


def _schedules_of(*screen_ids: int) -> None:
    """Writes to a screen's schedule one at a time, to their commit. Two inserts that
    overlap, each checking the exclusion constraint against the other's uncommitted row,
    wait for each other: PostgreSQL kills one as a deadlock (a 503) where it should be
    told ``showtime_overlap``. In turn, the second sees the first's row committed (or gone).
    Screens are locked in id order, so two moves between the same screens cannot deadlock."""
    for screen_id in sorted(set(screen_ids)):
        db.xact_lock(SCHEDULE_LOCK, screen_id)


def update_showtime(showtime_id: int, data: dict, *, actor: staff.Actor | None) -> Showtime:
    """An admin's, or a manager's of the screen's theater; moving it to a screen of
    another theater needs that theater too."""
    with _unit_of_work("showtime"):
        showtime = _lock(Showtime, showtime_id, "Showtime")
        _authorize(actor, screen_theater_id(showtime.screen_id))
        before = audit.snapshot(showtime)
        if "movie_id" in data:
            _ensure_exists(Movie, data["movie_id"], "movie_id", "movie")
        if "screen_id" in data:
            _ensure_exists(Screen, data["screen_id"], "screen_id", "screen")
            _authorize(actor, screen_theater_id(data["screen_id"]))
            if data["screen_id"] != showtime.screen_id and _has_reservations(showtime_id):
                raise errors.InUse("This showtime has reservations for seats of its screen; "
                                   "it cannot move to another screen")
            if data["screen_id"] != showtime.screen_id and _has_blocked_seats(showtime_id):
                raise errors.InUse("This showtime has blocked seats of its screen; unblock them before "
                                   "moving it to another screen")
        _schedules_of(showtime.screen_id, data.get("screen_id", showtime.screen_id))
        # No autoflush until the new end is computed: a half-applied row (new
        # start, old end) would break the ends-after-start check.
        with db.session.no_autoflush:
            _apply(showtime, data, ("movie_id", "screen_id", "starts_at", "prices", "currency", "orphan_seats"))
            _check_prices(showtime.screen_id, showtime.prices)
            _schedule(showtime)
        _audit("update", showtime, actor, before)
    return showtime


def _has_reservations(showtime_id: int) -> bool:
    return db.session.scalar(select(exists().where(Reservation.showtime_id == showtime_id)))


def _has_blocked_seats(showtime_id: int) -> bool:
    return db.session.scalar(select(exists().where(BlockedSeat.showtime_id == showtime_id)))


def delete_showtime(showtime_id: int, *, actor: staff.Actor | None) -> None:
    """An admin's, or a manager's of the screen's theater."""
    with _unit_of_work("showtime", deleting="showtime"):
        showtime = _lock(Showtime, showtime_id, "Showtime")
        _authorize(actor, screen_theater_id(showtime.screen_id))
        _delete(showtime, actor)


def get_showtime(showtime_id: int) -> Showtime:
    return _get(Showtime, showtime_id, "Showtime")


def list_showtimes(
    page: int,
    page_size: int,
    movie_id: int | None = None,
    theater_id: int | None = None,
    city_id: int | None = None,
    day: date | None = None,
    starts_after: datetime | None = None,
    starts_before: datetime | None = None,
) -> tuple[list[Showtime], int]:
    """Showtimes by movie, theater, city and local date, soonest first."""
    query = select(Showtime)
    if movie_id is not None:
        query = query.where(Showtime.movie_id == movie_id)
    if theater_id is not None or city_id is not None or day is not None:
        query = query.where(Showtime.id.in_(_showtimes_in(city_id, day, theater_id)))
    if starts_after is not None:
        query = query.where(Showtime.starts_at >= starts_after)
    if starts_before is not None:
        query = query.where(Showtime.starts_at < starts_before)
    return page_of(query, [Showtime.starts_at, Showtime.id], page, page_size)


def local_time(at: datetime, zone: str) -> str:
    """``at`` in the IANA time zone ``zone``, as ISO 8601 with that zone's offset then."""
    return at.astimezone(zoneinfo.ZoneInfo(zone)).isoformat()


def showtime_details(showtimes: list[Showtime]) -> list[dict]:
    """Showtimes with their movie, theater, city and local start time: the static
    part of what a client shows, in one query whatever the number (cacheable;
    ``seats.seats_available`` adds the live part)."""
    if not showtimes:
        return []
    rows = db.session.execute(
        select(Showtime.id, Movie, Theater.id, Theater.name, City)
        .join(Movie, Movie.id == Showtime.movie_id)
        .join(Screen, Screen.id == Showtime.screen_id)
        .join(Theater, Theater.id == Screen.theater_id)
        .join(City, City.id == Theater.city_id)
        .where(Showtime.id.in_([s.id for s in showtimes]))
    ).all()
    by_id = {row[0]: row for row in rows}
    out = []
    for showtime in showtimes:
        _, movie, theater_id, theater_name, city = by_id[showtime.id]
        out.append({
            "id": showtime.id, "movie_id": showtime.movie_id, "screen_id": showtime.screen_id,
            "starts_at": showtime.starts_at, "ends_at": showtime.ends_at, "prices": showtime.prices,
            "currency": showtime.currency, "created_at": showtime.created_at,
            "orphan_seats": showtime.orphan_seats,
            "starts_at_local": local_time(showtime.starts_at, city.timezone),
            "movie": {"id": movie.id, "title": movie.title, "duration_minutes": movie.duration_minutes,
                      "rating": movie.rating},
            "theater": {"id": theater_id, "name": theater_name},
            "city": {"id": city.id, "name": city.name, "timezone": city.timezone},
        })
    return out


def _seat_entry(seat: Seat, prices: dict[str, int]) -> dict:
    """One seat of a seat map, ``available`` until the booking engine overlays its status."""
    return {
        "id": seat.id,
        "label": seat.label,
        "row": seat.row_label,
        "number": seat.number,
        "category": seat.category,
        "x": seat.col_index + 1,
        "y": seat.row_index + 1,
        "price_cents": prices.get(seat.category),
        "status": "available",
    }


def seat_map(showtime_id: int) -> dict:
    """Every seat of the showtime's screen with its price; status ``available``
    until the booking engine overlays holds and bookings."""
    showtime = get_showtime(showtime_id)
    seats = screen_seats(showtime.screen_id)
    return {
        "showtime_id": showtime.id,
        "currency": showtime.currency,
        "focal_point": screen_focal_point(get_screen(showtime.screen_id), seats),
        "seats": [_seat_entry(seat, showtime.prices) for seat in seats],
    }


def seat_maps(showtime_ids: Iterable[int]) -> dict[int, dict]:
    """``seat_map`` of several showtimes (without focal points) in one query, whatever
    their number: the batch read behind the GraphQL gateway's seat maps. Unknown ids
    are left out."""
    ids = sorted(set(showtime_ids))
    if not ids:
        return {}
    rows = db.session.execute(
        select(Showtime.id, Showtime.currency, Showtime.prices, Seat)
        .join(Seat, Seat.screen_id == Showtime.screen_id, isouter=True)
        .where(Showtime.id.in_(ids))
        .order_by(Showtime.id, Seat.row_index, Seat.col_index)
    ).all()
    out: dict[int, dict] = {}
    for showtime_id, currency, prices, seat in rows:
        entry = out.setdefault(showtime_id, {"showtime_id": showtime_id, "currency": currency, "seats": []})
        if seat is not None:
            entry["seats"].append(_seat_entry(seat, prices))
    return out


def by_ids(model, ids: Iterable[int]) -> dict:
    """Rows of one catalog model (``City``, ``Theater``, ``Movie``, ``Showtime``) by id, in
    one query whatever their number; unknown ids are left out. The batch read behind
    the GraphQL gateway's data loaders."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {row.id: row for row in db.session.scalars(select(model).where(model.id.in_(wanted)))}


def screen_focal_point(screen: Screen, seats: list[Seat] | None = None) -> dict[str, float]:
    """The screen's focal point: its layout's, or the default (middle of the widest
    row, two thirds back), from its seats as stored."""
    specs = [SeatSpec(s.row_label, s.number, s.label, s.category, s.row_index, s.col_index)
             for s in (seats if seats is not None else screen_seats(screen.id))]
    return focal_point(screen.layout, specs)
