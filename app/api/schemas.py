"""Request, response and query schemas. Inputs refuse unknown fields; ids are dump-only."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from app.api import fields as mfields
from app.bootstrap import marquee
from app.models import ReservationStatus, TicketStatus, WaitlistStatus

CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="Must be an ISO 4217 code such as EUR or USD")
CATEGORY = validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$", error="Invalid seat category")
MAX_PRICE_CENTS = 10_000_000


def within_seats_per_hold(value) -> None:
    """The one limit of seats a hold may take (``MAX_SEATS_PER_HOLD``), the
    services' own (``seats.check_seat_count``), checked here to answer early."""
    limit = marquee().settings.max_seats_per_hold
    if (value if isinstance(value, int) else len(value)) > limit:
        raise ValidationError(f"At most {limit} seats")


class PropertyCount(validate.Validator):
    """How many properties an object (a Dict field) has: the OpenAPI spec says
    ``minProperties``/``maxProperties`` (``validate.Length`` would say
    ``minLength``/``maxLength``, which are for strings)."""

    # Not ``min``/``max``: apispec would read those as a numeric range.
    def __init__(self, least: int, most: int) -> None:
        self.least, self.most = least, most

    def __call__(self, value):
        if not self.least <= len(value) <= self.most:
            raise ValidationError(f"Between {self.least} and {self.most} entries.")
        return value

    def metadata(self) -> dict:
        return {"minProperties": self.least, "maxProperties": self.most}


PRICE_COUNT = PropertyCount(1, 50)


def _prices(required: bool) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=CATEGORY),
        values=fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PRICE_CENTS)),
        required=required,
        validate=PRICE_COUNT,
        metadata={"description": "Price in cents per seat category of the screen", **PRICE_COUNT.metadata()},
    )


def _unstorable_text(value, path: str, found: dict) -> None:
    """Collect strings PostgreSQL cannot store: NUL characters or lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            found.setdefault(path or "_schema", []).append("Must not contain NUL characters")
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                found.setdefault(path or "_schema", []).append("Must be valid Unicode text")
    elif isinstance(value, dict):
        for key, item in value.items():
            _unstorable_text(key, path or str(key), found)
            _unstorable_text(item, path or str(key), found)
    elif isinstance(value, list):
        for item in value:
            _unstorable_text(item, path, found)


class InputSchema(Schema):
    """Base of every input (body or query): refuses text that cannot be stored."""

    class Meta:
        unknown = EXCLUDE

    @pre_load(pass_collection=True)
    def refuse_unstorable_text(self, data, **kwargs):
        found: dict = {}
        # Query arguments arrive as a MultiDict; look at every value.
        items = data.lists() if hasattr(data, "lists") else (data.items() if isinstance(data, dict) else [])
        for key, value in items:
            _unstorable_text(value, str(key), found)
        if found:
            raise ValidationError(found)
        return data


class StrictSchema(InputSchema):
    """Request bodies: unknown fields are refused too."""

    class Meta:
        unknown = RAISE


def _text(max_len: int, *, required: bool = True, allow_none: bool = False, **kw) -> fields.String:
    return fields.String(
        required=required,
        allow_none=allow_none,
        validate=validate.Length(min=1, max=max_len),
        **kw,
    )


# --- auth -------------------------------------------------------------------

class RegisterSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=8, max=256)
    )
    name = _text(200)


class LoginSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String(dump_only=True)
    name = fields.String(dump_only=True)
    role = fields.String(dump_only=True)
    created_at = mfields.DateTime(dump_only=True)


# --- shared -----------------------------------------------------------------

class ProblemSchema(Schema):
    """RFC 9457 problem document."""

    type = fields.String()
    status = fields.Integer(required=True)
    title = fields.String(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True)
    request_id = fields.String()
    errors = fields.Dict()

    class Meta:
        unknown = "include"


# --- cities -----------------------------------------------------------------

class CitySchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    name = _text(120)
    country = _text(120, required=False, allow_none=True)
    timezone = _text(64)
    created_at = mfields.DateTime(dump_only=True)


class CityPatchSchema(CitySchema):
    name = _text(120, required=False)
    timezone = _text(64, required=False)


class CityQuerySchema(InputSchema):
    q = fields.String(validate=validate.Length(min=1, max=120))


# --- theaters ---------------------------------------------------------------

class RefundPolicySchema(StrictSchema):
    """A theater's refund policy (``services.refunds``)."""

    cutoff_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=43200), metadata={
        "description": "A paid reservation can be cancelled until this many minutes before the show (409 "
                       "cancellation_closed after)"})
    fee_percent = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=100), metadata={
        "description": "Percent of the charge kept, rounded down to the cent"})
    fee_cents = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_PRICE_CENTS),
                               metadata={"description": "Fixed fee kept, added to the percent fee; the fee never "
                                                        "exceeds the charge"})


class TheaterSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    name = _text(200)
    city_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    address = _text(500)
    latitude = fields.Float(allow_none=True, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(min=-180, max=180))
    refund_policy = fields.Nested(RefundPolicySchema, allow_none=True, metadata={
        "description": "Null (default): the site-wide cancellation cut-off (CANCELLATION_CUTOFF_MINUTES) and a full "
                       "refund"})
    distance_km = fields.Float(dump_only=True)
    created_at = mfields.DateTime(dump_only=True)


class TheaterPatchSchema(TheaterSchema):
    name = _text(200, required=False)
    city_id = fields.Integer(strict=True, validate=validate.Range(min=1))
    address = _text(500, required=False)


class TheaterQuerySchema(InputSchema):
    city_id = fields.Integer(validate=validate.Range(min=1))
    near = fields.String(
        metadata={"description": "`lat,lng` in degrees: nearest first, within radius_km"},
        validate=validate.Length(max=64),
    )
    radius_km = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=500))

    @post_load
    def parse_near(self, data, **kwargs):
        raw = data.get("near")
        if raw is None:
            return data
        try:
            lat_s, lng_s = raw.split(",")
            lat, lng = float(lat_s), float(lng_s)
        except ValueError as exc:
            raise ValidationError("Use near=lat,lng, e.g. near=48.85,2.35", "near") from exc
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise ValidationError("Latitude must be within ±90 and longitude within ±180", "near")
        data["near"] = (lat, lng)
        return data


# --- screens ----------------------------------------------------------------

class LayoutRowSchema(StrictSchema):
    label = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Za-z0-9]{1,4}$", error="1-4 letters or digits")
    )
    seats = fields.List(
        fields.String(allow_none=True, validate=CATEGORY),
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "A seat category per position; null is a gap"},
    )


class FocalPointSchema(StrictSchema):
    x = fields.Float(required=True, validate=validate.Range(min=1, max=500),
                     metadata={"description": "Position in the row (1-based, gaps counted)"})
    y = fields.Float(required=True, validate=validate.Range(min=1, max=200),
                     metadata={"description": "Row (1-based, row 1 nearest the screen)"})


class LayoutSchema(StrictSchema):
    rows = fields.List(
        fields.Nested(LayoutRowSchema), required=True, validate=validate.Length(min=1, max=200)
    )
    focal_point = fields.Nested(FocalPointSchema, metadata={
        "description": "The best place to sit; by default the middle of the widest row, two thirds of the way back"})


class SeatSchema(Schema):
    id = fields.Integer(dump_only=True)
    label = fields.String(dump_only=True)
    row = fields.String(dump_only=True, attribute="row_label")
    number = fields.Integer(dump_only=True)
    category = fields.String(dump_only=True)
    row_index = fields.Integer(dump_only=True)
    col_index = fields.Integer(dump_only=True)
    x = fields.Function(lambda seat: seat.col_index + 1, dump_only=True,
                        metadata={"description": "Position in the row, 1-based, gaps counted"})
    y = fields.Function(lambda seat: seat.row_index + 1, dump_only=True,
                        metadata={"description": "Row, 1-based, row 1 nearest the screen"})


class ScreenSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    theater_id = fields.Integer(dump_only=True)
    name = _text(120)
    layout = fields.Nested(LayoutSchema, required=True)
    seat_count = fields.Integer(dump_only=True)
    created_at = mfields.DateTime(dump_only=True)


class ScreenPatchSchema(ScreenSchema):
    name = _text(120, required=False)
    layout = fields.Nested(LayoutSchema)


class ScreenDetailSchema(ScreenSchema):
    seats = fields.List(fields.Nested(SeatSchema), dump_only=True)
    focal_point = fields.Nested(FocalPointSchema, dump_only=True,
                                metadata={"description": "The layout's focal point, or the default one"})


# --- movies -----------------------------------------------------------------

class MovieSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    title = _text(300)
    duration_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1440))
    description = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    genres = fields.List(
        fields.String(validate=validate.Length(min=1, max=40)),
        load_default=list,
        validate=validate.Length(max=20),
    )
    language = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))
    rating = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=16),
        metadata={"description": "Age certification, e.g. PG-13"},
    )
    release_date = mfields.Date(allow_none=True)
    poster_url = fields.Url(allow_none=True, validate=validate.Length(max=2000))
    average_rating = fields.Float(dump_only=True, allow_none=True)
    review_count = fields.Integer(dump_only=True)
    created_at = mfields.DateTime(dump_only=True)


class MoviePatchSchema(MovieSchema):
    title = _text(300, required=False)
    duration_minutes = fields.Integer(strict=True, validate=validate.Range(min=1, max=1440))
    genres = fields.List(
        fields.String(validate=validate.Length(min=1, max=40)), validate=validate.Length(max=20)
    )


class MovieQuerySchema(InputSchema):
    q = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "Title contains"})
    genre = fields.String(validate=validate.Length(min=1, max=40))
    language = fields.String(validate=validate.Length(min=1, max=40))
    city_id = fields.Integer(validate=validate.Range(min=1))
    date = mfields.Date(metadata={"description": "Has a showtime on this local date"})


# --- showtimes --------------------------------------------------------------

class ShowtimeSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    movie_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    screen_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    starts_at = mfields.DateTime(required=True, format="iso")
    ends_at = mfields.DateTime(dump_only=True)
    prices = _prices(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    orphan_seats = fields.String(load_default="prevent", validate=validate.OneOf(["prevent", "allow"]), metadata={
        "description": "prevent (default): a hold by seat that would leave a free seat alone in its run is "
                       "refused, 409 orphan_seat; allow: no such check"})
    created_at = mfields.DateTime(dump_only=True)
    movie = fields.Nested("ShowtimeMovieSchema", dump_only=True)
    theater = fields.Nested("NamedRefSchema", dump_only=True)
    city = fields.Nested("ShowtimeCitySchema", dump_only=True)
    starts_at_local = fields.String(dump_only=True, metadata={
        "format": "date-time", "description": "The start in the city's time zone, with its offset then"})
    seats_available = fields.Integer(dump_only=True, metadata={
        "description": "Seats a customer could hold now (live: neither held nor booked; 0 once started)"})


class ShowtimeMovieSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)
    duration_minutes = fields.Integer(dump_only=True)
    rating = fields.String(dump_only=True, allow_none=True)


class NamedRefSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)


class ShowtimeCitySchema(NamedRefSchema):
    timezone = fields.String(dump_only=True, metadata={"description": "IANA time zone"})


class ShowtimePatchSchema(ShowtimeSchema):
    movie_id = fields.Integer(strict=True, validate=validate.Range(min=1))
    screen_id = fields.Integer(strict=True, validate=validate.Range(min=1))
    starts_at = mfields.DateTime(format="iso")
    prices = _prices(required=False)
    currency = fields.String(validate=CURRENCY)
    orphan_seats = fields.String(validate=validate.OneOf(["prevent", "allow"]))


class ShowtimeQuerySchema(InputSchema):
    movie_id = fields.Integer(validate=validate.Range(min=1))
    theater_id = fields.Integer(validate=validate.Range(min=1))
    city_id = fields.Integer(validate=validate.Range(min=1))
    date = mfields.Date(metadata={"description": "Local date of the showtime in its city"})
    starts_after = mfields.DateTime(format="iso")
    starts_before = mfields.DateTime(format="iso")


class SeatMapSeatSchema(Schema):
    id = fields.Integer()
    label = fields.String()
    row = fields.String()
    number = fields.Integer()
    category = fields.String()
    x = fields.Integer(metadata={"description": "Position in the row, 1-based, gaps counted"})
    y = fields.Integer(metadata={"description": "Row, 1-based, row 1 nearest the screen"})
    price_cents = fields.Integer(allow_none=True)
    status = fields.String(validate=validate.OneOf(["available", "held", "booked", "blocked"]))


class SeatMapSchema(Schema):
    showtime_id = fields.Integer()
    currency = fields.String()
    focal_point = fields.Nested(FocalPointSchema)
    seats = fields.List(fields.Nested(SeatMapSeatSchema))
    version = fields.String(metadata={
        "description": "Opaque: the change-stream position this map reflects; GET /showtimes/{id}/seats/events"
                       "?since=<version> sends every change after it"})


# The most seats a screen can have (LayoutSchema: up to 200 rows of up to 500 positions).
MAX_SCREEN_SEATS = 200 * 500


class BlockSeatsRequestSchema(StrictSchema):
    seat_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)), required=True,
        validate=validate.Length(min=1, max=MAX_SCREEN_SEATS),
        metadata={"description": "Free seats of the showtime's screen to take out of sale: all or none"},
    )
    reason = _text(200, required=False, allow_none=True, metadata={"description": "Why, for other admins"})


class BlockedSeatSchema(Schema):
    seat_id = fields.Integer(dump_only=True)
    label = fields.String(dump_only=True)
    reason = fields.String(dump_only=True, allow_none=True)
    blocked_by = fields.Integer(dump_only=True, allow_none=True, metadata={"description": "The admin's user id"})
    blocked_at = mfields.DateTime(dump_only=True)


class BlockedSeatsSchema(Schema):
    showtime_id = fields.Integer(dump_only=True)
    seats = fields.List(fields.Nested(BlockedSeatSchema), dump_only=True,
                        metadata={"description": "In layout order (row, then position)"})


# --- waiting rooms -----------------------------------------------------------

class WaitingRoomRequestSchema(StrictSchema):
    opens_at = mfields.DateTime(required=True, format="iso", metadata={
        "description": "When the queue opens: those who join before it are numbered in a random order at "
                       "this moment; after it, numbers follow arrival. Before the showtime starts"})
    admit_per_minute = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=60000), metadata={
        "description": "Numbers admitted a minute, spread over the seconds (admit_per_minute / 60 each second)"})
    max_active = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100000), metadata={
        "description": "Admitted customers shopping at once (admitted, neither done, left nor expired): "
                       "admission pauses at this many"})
    session_seconds = fields.Integer(required=True, strict=True, validate=validate.Range(min=30, max=7200), metadata={
        "description": "How long an admission lasts; a reservation ends it earlier (done)"})


class WaitingRoomStatsSchema(Schema):
    pre_queue = fields.Integer(dump_only=True, metadata={"description": "Joined before the opening (until it)"})
    waiting = fields.Integer(dump_only=True, metadata={"description": "Numbered, not admitted yet (nor left)"})
    admitted = fields.Integer(dump_only=True, metadata={"description": "Sessions admitted so far"})
    active = fields.Integer(dump_only=True, metadata={"description": "Admitted and still shopping"})
    serving_number = fields.Integer(dump_only=True)
    last_number = fields.Integer(dump_only=True)
    admissions_last_minute = fields.Integer(dump_only=True)
    expired = fields.Integer(dump_only=True, metadata={"description": "Sessions whose time ran out"})
    done = fields.Integer(dump_only=True, metadata={"description": "Sessions ended by a reservation"})
    left = fields.Integer(dump_only=True)
    joined = fields.Integer(dump_only=True)


class WaitingRoomSchema(WaitingRoomRequestSchema):
    showtime_id = fields.Integer(dump_only=True)
    stats = fields.Nested(WaitingRoomStatsSchema, dump_only=True, metadata={"description": "GET only: live figures"})


class QueueEntrySchema(Schema):
    id = fields.String(dump_only=True)
    showtime_id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf(
        ["pre_queue", "waiting", "admitted", "done", "left", "expired"]))
    number = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "Null until the opening for those who joined before it"})
    position = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "number - serving_number while waiting (0 once admitted): follow serving_number on the "
                       "public status or the seat events stream instead of asking again"})
    estimated_wait_seconds = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "Waiting: position at admit_per_minute; pre_queue: until the opening"})
    opens_at = mfields.DateTime(dump_only=True, allow_none=True)
    admitted_until = mfields.DateTime(dump_only=True, metadata={"description": "Once admitted"})
    admission_token = fields.String(dump_only=True, metadata={
        "description": "Once admitted: send it as the Admission-Token header of POST /showtimes/{id}/holds"})


class QueueStatusSchema(Schema):
    showtime_id = fields.Integer(dump_only=True)
    serving_number = fields.Integer(dump_only=True, metadata={"description": "Numbers up to it are admitted"})
    last_number = fields.Integer(dump_only=True, metadata={"description": "The last number given"})
    admit_per_minute = fields.Integer(dump_only=True)
    max_active = fields.Integer(dump_only=True)
    opens_at = mfields.DateTime(dump_only=True, allow_none=True)
    open = fields.Boolean(dump_only=True, metadata={"description": "The queue has opened (numbers are given)"})


# --- booking ----------------------------------------------------------------

class AccessibleField(fields.Field):
    """``true``/``false``, or a number of wheelchair spaces (best available)."""

    default_error_messages = {"invalid": "true or false, or a number of wheelchair spaces (0 or more)"}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and 0 <= value <= MAX_SCREEN_SEATS:
            return value
        raise self.make_error("invalid")


class HoldRequestSchema(StrictSchema):
    """Either ``seat_ids`` (these seats, all or none) or ``quantity`` (best available)."""

    seat_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        validate=[validate.Length(min=1), within_seats_per_hold],
        metadata={"description": "Seats to hold: all or none (at most MAX_SEATS_PER_HOLD, default 10)"},
    )
    quantity = fields.Integer(
        strict=True, validate=[validate.Range(min=1), within_seats_per_hold],
        metadata={"description": "Best available: Marquee picks this many seats and holds them atomically "
                                 "(side by side in one row stranding no seat, nearest the focal point; then "
                                 "stranding one; then split over neighbouring rows in parts of two or more)"},
    )
    category = fields.String(validate=CATEGORY, metadata={"description": "Best available within this category"})
    accessible = AccessibleField(metadata={
        "description": "With seat_ids: true to hold wheelchair spaces (and the companion seats beside them), kept "
                       "for accessible parties until ACCESSIBLE_RELEASE_MINUTES before the show. With quantity: k, "
                       "the wheelchair spaces the party needs (true is 1), the rest of the party beside them in one "
                       "row (companion seats first to be next to a space)",
        "oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0}]})

    @validates_schema
    def one_way_to_choose(self, data, **kwargs):
        if ("seat_ids" in data) == ("quantity" in data):
            raise ValidationError("Give either seat_ids or quantity (best available)", "_schema")
        if "category" in data and "quantity" not in data:
            raise ValidationError("category goes with quantity (best available)", "category")
        accessible = data.get("accessible")
        if "seat_ids" in data and accessible is not None and not isinstance(accessible, bool):
            raise ValidationError("With seat_ids, accessible is true or false", "accessible")
        if "quantity" in data and int(accessible or 0) > data["quantity"]:
            raise ValidationError("At most quantity wheelchair spaces", "accessible")


class HoldSeatSchema(Schema):
    id = fields.Integer(dump_only=True)
    price_cents = fields.Integer(dump_only=True, allow_none=True)


class HoldSchema(Schema):
    id = fields.String(dump_only=True, metadata={"description": "Unguessable hold id"})
    showtime_id = fields.Integer(dump_only=True)
    seat_ids = fields.List(fields.Integer(), dump_only=True)
    expires_at = fields.String(dump_only=True, metadata={"format": "date-time"})
    seats = fields.Method("_seats", dump_only=True, metadata={
        "type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"},
                                                                   "price_cents": {"type": "integer"}}},
        "description": "Each seat with its price, fixed when the hold took it (price rules included)"})
    total_cents = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "What reserving this hold charges before any voucher: the sum of its seats' prices"})
    currency = fields.Method("_currency", dump_only=True, metadata={"type": "string"})

    def _seats(self, hold):
        prices = list(hold.prices) if len(hold.prices) == len(hold.seat_ids) else [None] * len(hold.seat_ids)
        return [{"id": seat_id, "price_cents": price} for seat_id, price in zip(hold.seat_ids, prices, strict=True)]

    def _currency(self, hold):
        return hold.currency or None


class ReservationRequestSchema(StrictSchema):
    hold_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    voucher_code = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "A voucher code (any case): its discount shows as discount_cents. 409 voucher_invalid when "
                       "it cannot be used (the hold stays yours: reserve again without it); 429 after "
                       "VOUCHER_MAX_FAILURES wrong codes in VOUCHER_WINDOW_SECONDS"})
    payment_token = fields.String(
        required=True,
        validate=validate.Regexp(r"^tok_[A-Za-z0-9_]{1,64}$", error="A payment token such as tok_visa"),
        metadata={"description": "From the payment gateway; the test gateway knows tok_visa, "
                                 "tok_declined and tok_error"},
    )


PAYMENT_STATUSES = ["pending", "succeeded", "declined", "refund_pending", "refunded", "not_refunded", "not_charged"]


class ReservationSeatSchema(Schema):
    id = fields.Integer(attribute="seat_id", dump_only=True)
    label = fields.String(dump_only=True)
    category = fields.String(dump_only=True)
    price_cents = fields.Integer(dump_only=True)


class ReservationSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf(
        [str(v) for v in ReservationStatus]))
    showtime_id = fields.Integer(dump_only=True)
    seats = fields.List(fields.Nested(ReservationSeatSchema), dump_only=True)
    total_cents = fields.Integer(dump_only=True, metadata={
        "description": "What is charged: the sum of the seats' prices (as the hold fixed them) less "
                       "discount_cents, never below 0"})
    discount_cents = fields.Integer(dump_only=True, metadata={"description": "The voucher's discount (0 without)"})
    currency = fields.String(dump_only=True)
    expires_at = mfields.DateTime(dump_only=True, allow_none=True, metadata={
        "description": "Payment deadline, while the status is pending_payment (null otherwise)"})
    payment_status = fields.String(dump_only=True, validate=validate.OneOf(PAYMENT_STATUSES), metadata={
        "description": "pending (awaiting the charge), succeeded, declined (see failure_reason), "
                       "refund_pending, refunded, not_refunded (cancelled with a fee of the whole charge), "
                       "not_charged (ended before any charge)"})
    refund_cents = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "Once cancelled: what is refunded, fixed at cancellation by the theater's refund policy "
                       "(the charge less the fee; 0 when nothing had been charged; the whole charge when a "
                       "payment arrived after the reservation ended). Null while not cancelled"})
    failure_reason = fields.String(dump_only=True, allow_none=True, metadata={
        "description": "Why the charge was declined: declined, unknown_token, ... (null otherwise)"})
    created_at = mfields.DateTime(dump_only=True)
    confirmed_at = mfields.DateTime(dump_only=True, allow_none=True)
    cancelled_at = mfields.DateTime(dump_only=True, allow_none=True)
    links = fields.Nested("ReservationLinksSchema", dump_only=True)


class ReservationLinksSchema(Schema):
    self = fields.String(dump_only=True, metadata={"description": "This reservation"})
    tickets = fields.String(dump_only=True, metadata={"description": "Its tickets, once confirmed"})


class ReservationQuerySchema(InputSchema):
    status = fields.String(validate=validate.OneOf(
        [str(v) for v in ReservationStatus]))
    all = fields.Boolean(load_default=False, metadata={"description": "Admins: everyone's reservations"})
    user_id = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Admins: one user's"})


# --- selling: price rules and vouchers ----------------------------------------

MAX_INT = 2**31 - 1
MAX_ID = 2**63 - 1
CLOCK = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="A local time as HH:MM")


def _id_field(**kw) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), **kw)


class PriceRuleScopeSchema(StrictSchema):
    theater_id = _id_field()
    movie_id = _id_field()
    showtime_id = _id_field()
    category = fields.String(validate=CATEGORY, metadata={"description": "Only seats of this category"})


class PriceRuleWhenSchema(StrictSchema):
    weekdays = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=7)),
                           validate=validate.Length(min=1, max=7), metadata={
                               "description": "ISO weekdays of the showtime's local start: 1 Monday .. 7 Sunday"})
    local_time_from = fields.String(validate=CLOCK, metadata={
        "description": "HH:MM, inclusive, of the showtime's start in its city's time zone"})
    local_time_to = fields.String(validate=CLOCK, metadata={
        "description": "HH:MM, exclusive; before local_time_from it wraps past midnight"})
    days_before_max = fields.Integer(strict=True, validate=validate.Range(min=0, max=3650), metadata={
        "description": "Sales at most this many days (24 h) before the start (last minute)"})
    days_before_min = fields.Integer(strict=True, validate=validate.Range(min=0, max=3650), metadata={
        "description": "Sales at least this many days (24 h) before the start (early bird)"})
    occupancy_min = fields.Integer(strict=True, validate=validate.Range(min=1, max=100), metadata={
        "description": "From this percent of sellable seats (all but blocked) held or booked, as the hold sees "
                       "them before taking its own"})

    @validates_schema
    def distinct_weekdays(self, data, **kwargs):
        if "weekdays" in data and len(set(data["weekdays"])) != len(data["weekdays"]):
            raise ValidationError("Each weekday once", "weekdays")
        if data.get("local_time_from") is not None and data.get("local_time_from") == data.get("local_time_to"):
            raise ValidationError("An empty window", "local_time_to")


class PriceRuleAdjustSchema(StrictSchema):
    percent = fields.Integer(strict=True, validate=validate.Range(min=-100, max=1000), metadata={
        "description": "Percent of the running price (negative: a discount), rounded half up to the cent"})
    amount_cents = fields.Integer(strict=True, validate=validate.Range(min=-MAX_PRICE_CENTS, max=MAX_PRICE_CENTS),
                                  metadata={"description": "Cents added (negative: taken off)"})

    @validates_schema
    def exactly_one(self, data, **kwargs):
        if ("percent" in data) == ("amount_cents" in data):
            raise ValidationError("Give exactly one of percent and amount_cents", "_schema")


class PriceRuleSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    name = _text(120)
    scope = fields.Nested(PriceRuleScopeSchema, load_default=dict, metadata={
        "description": "What it applies to; each field left out matches everything"})
    when = fields.Nested(PriceRuleWhenSchema, load_default=dict, metadata={
        "description": "When it applies; each condition left out always holds"})
    adjust = fields.Nested(PriceRuleAdjustSchema, required=True)
    priority = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=-1_000_000, max=1_000_000),
                              metadata={"description": "Matching rules apply in ascending priority (then id), each "
                                                       "on the running price"})
    created_at = mfields.DateTime(dump_only=True)
    updated_at = mfields.DateTime(dump_only=True)


class PriceRulePatchSchema(PriceRuleSchema):
    name = _text(120, required=False)
    scope = fields.Nested(PriceRuleScopeSchema, metadata={"description": "Replaces the scope"})
    when = fields.Nested(PriceRuleWhenSchema, metadata={"description": "Replaces the conditions"})
    adjust = fields.Nested(PriceRuleAdjustSchema)
    priority = fields.Integer(strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))


class PriceRuleQuerySchema(InputSchema):
    showtime_id = _id_field(metadata={"description": "Rules scoped to this showtime"})


class VoucherScopeSchema(StrictSchema):
    theater_id = _id_field()
    movie_id = _id_field()
    showtime_id = _id_field()


VOUCHER_CODE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$",
                               error="3 to 64 letters, digits, - or _ (case-insensitive)")


class VoucherSchema(StrictSchema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=VOUCHER_CODE, metadata={
        "description": "Case-insensitive, unique; shown lower-case"})
    percent_off = fields.Integer(strict=True, validate=validate.Range(min=1, max=100))
    amount_off_cents = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_PRICE_CENTS))
    currency = fields.String(validate=CURRENCY, metadata={"description": "Of amount_off_cents (required with it)"})
    max_uses = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_INT))
    max_uses_per_user = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_INT))
    valid_from = mfields.DateTime(allow_none=True)
    valid_until = mfields.DateTime(allow_none=True, metadata={"description": "Exclusive"})
    scope = fields.Nested(VoucherScopeSchema, metadata={"description": "Only reservations of these"})
    uses = fields.Integer(dump_only=True, metadata={
        "description": "Live redemptions (a cancelled or unpaid reservation gives its use back)"})
    created_at = mfields.DateTime(dump_only=True)
    updated_at = mfields.DateTime(dump_only=True)

    @validates_schema
    def one_discount(self, data, **kwargs):
        if ("percent_off" in data) == ("amount_off_cents" in data):
            raise ValidationError("Give exactly one of percent_off and amount_off_cents", "_schema")
        if "currency" in data and "percent_off" in data:
            raise ValidationError("currency goes with amount_off_cents", "currency")


class VoucherPatchSchema(VoucherSchema):
    code = fields.String(validate=VOUCHER_CODE)

    @validates_schema
    def one_discount(self, data, **kwargs):
        if "percent_off" in data and "amount_off_cents" in data:
            raise ValidationError("Give at most one of percent_off and amount_off_cents", "_schema")
        if "currency" in data and "percent_off" in data:
            raise ValidationError("currency goes with amount_off_cents", "currency")


class VoucherQuerySchema(InputSchema):
    code = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "Any case"})


PRICE_RULE_IN = {"name": "Busy evenings", "scope": {"theater_id": 7}, "when": {"weekdays": [5, 6],
                 "local_time_from": "18:00", "occupancy_min": 80}, "adjust": {"percent": 15}, "priority": 10}
PRICE_RULE = {"id": 3, **PRICE_RULE_IN, "created_at": "2026-11-01T10:00:00+00:00",
              "updated_at": "2026-11-01T10:00:00+00:00"}
VOUCHER_IN = {"code": "WINTER10", "percent_off": 10, "max_uses": 500, "max_uses_per_user": 1,
              "valid_until": "2027-03-01T00:00:00+00:00"}
VOUCHER = {"id": 9, **VOUCHER_IN, "code": "winter10", "valid_from": None, "scope": {}, "uses": 12,
           "created_at": "2026-11-01T10:00:00+00:00", "updated_at": "2026-11-01T10:00:00+00:00"}


# --- tickets ----------------------------------------------------------------

class TicketShowtimeSchema(Schema):
    id = fields.Integer(dump_only=True)
    starts_at = mfields.DateTime(dump_only=True)
    starts_at_local = fields.String(dump_only=True, metadata={"format": "date-time"})
    timezone = fields.String(dump_only=True, metadata={"description": "IANA time zone of the theater"})


class TicketMovieSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)


class TicketSchema(Schema):
    id = fields.Integer(dump_only=True)
    reservation_id = fields.Integer(dump_only=True)
    movie = fields.Nested(TicketMovieSchema, dump_only=True)
    theater = fields.Nested("NamedRefSchema", dump_only=True)
    showtime = fields.Nested(TicketShowtimeSchema, dump_only=True)
    code = fields.String(dump_only=True)
    seat_label = fields.String(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf([str(v) for v in TicketStatus]))
    checked_in_at = mfields.DateTime(dump_only=True, allow_none=True)
    qr_url = fields.String(dump_only=True, metadata={"description": "PNG of the QR code"})
    qr_svg_url = fields.String(dump_only=True, metadata={"description": "SVG of the QR code"})


class CheckInRequestSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=255))


class CheckInSchema(Schema):
    status = fields.String(dump_only=True, metadata={"description": "admitted"})
    code = fields.String(dump_only=True)
    seat_label = fields.String(dump_only=True)
    showtime_id = fields.Integer(dump_only=True)
    reservation_id = fields.Integer(dump_only=True)
    checked_in_at = mfields.DateTime(dump_only=True)
    checked_in_by = fields.Integer(dump_only=True, allow_none=True, metadata={"description": "who scanned it"})


class ScanSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=255))
    scanned_at = mfields.DateTime(required=True, metadata={
        "description": "When the scanner read the code (its clock; at most 5 minutes ahead of the server's)"})


class CheckInBatchRequestSchema(StrictSchema):
    scans = fields.List(fields.Nested(ScanSchema), required=True, validate=validate.Length(min=1, max=500),
                        metadata={"description": "At most 500 scans an upload"})


SCAN_STATUSES = ["admitted", "conflict", "invalid", "cancelled", "forbidden"]


class ScanResultSchema(Schema):
    code = fields.String(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf(SCAN_STATUSES), metadata={
        "description": "admitted: this scan checked the ticket in; conflict: another scan did first (see "
                       "checked_in_at and by); invalid: not a genuine code, no such ticket, or dated in the "
                       "future; cancelled; forbidden: a ticket of a theater where the caller has no role"})
    scanned_at = mfields.DateTime(dump_only=True)
    detail = fields.String(dump_only=True, allow_none=True)
    ticket_id = fields.Integer(dump_only=True, allow_none=True)
    showtime_id = fields.Integer(dump_only=True, allow_none=True)
    reservation_id = fields.Integer(dump_only=True, allow_none=True)
    seat_label = fields.String(dump_only=True, allow_none=True)
    checked_in_at = mfields.DateTime(dump_only=True, allow_none=True, metadata={
        "description": "When the admitting scan was made"})
    by = fields.Integer(dump_only=True, allow_none=True, metadata={
        "description": "The user id of the staff member whose scan admitted the ticket"})


class ScanCountsSchema(Schema):
    admitted = fields.Integer(dump_only=True)
    conflict = fields.Integer(dump_only=True)
    invalid = fields.Integer(dump_only=True)
    cancelled = fields.Integer(dump_only=True)
    forbidden = fields.Integer(dump_only=True)


class CheckInBatchSchema(Schema):
    results = fields.List(fields.Nested(ScanResultSchema), dump_only=True,
                          metadata={"description": "One a scan, in the order sent"})
    counts = fields.Nested(ScanCountsSchema, dump_only=True)


class CheckInListItemSchema(Schema):
    ticket_id = fields.Integer(dump_only=True)
    code = fields.String(dump_only=True)
    reservation_id = fields.Integer(dump_only=True)
    seat_id = fields.Integer(dump_only=True)
    seat_label = fields.String(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf([str(v) for v in TicketStatus]))
    checked_in = fields.Boolean(dump_only=True)
    checked_in_at = mfields.DateTime(dump_only=True, allow_none=True)


class JwkSchema(Schema):
    kty = fields.String(dump_only=True, metadata={"description": "OKP"})
    crv = fields.String(dump_only=True, metadata={"description": "Ed25519"})
    x = fields.String(dump_only=True, metadata={"description": "The public key, base64url (RFC 8037)"})
    kid = fields.String(dump_only=True, metadata={"description": "The key id a code names (v2.<kid>...)"})
    use = fields.String(dump_only=True, metadata={"description": "sig"})
    alg = fields.String(dump_only=True, metadata={"description": "EdDSA"})


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema), dump_only=True)


class TicketKeyRotationSchema(Schema):
    key = fields.Nested(JwkSchema, dump_only=True, metadata={"description": "The new current key"})
    retired_kid = fields.String(dump_only=True, allow_none=True, metadata={
        "description": "The key retired: it stays in the JWKS until the showtimes it signed for have ended"})


# --- reviews ----------------------------------------------------------------

class ReviewRequestSchema(StrictSchema):
    rating = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    text = fields.String(required=True, validate=validate.Length(min=1, max=5000))


class ReviewAcceptedSchema(Schema):
    status = fields.String(dump_only=True, metadata={"description": "accepted: written in the background"})


class ReviewSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.Integer(dump_only=True)
    movie_id = fields.Integer(dump_only=True)
    rating = fields.Integer(dump_only=True)
    text = fields.String(dump_only=True)
    created_at = mfields.DateTime(dump_only=True)
    updated_at = mfields.DateTime(dump_only=True)


class PageQuerySchema(InputSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))


class ReviewListSchema(Schema):
    movie_id = fields.Integer(dump_only=True)
    page = fields.Integer(dump_only=True)
    page_size = fields.Integer(dump_only=True)
    total = fields.Integer(dump_only=True)
    average_rating = fields.Float(dump_only=True, allow_none=True)
    review_count = fields.Integer(dump_only=True)
    items = fields.List(fields.Nested(ReviewSchema), dump_only=True)


# --- waitlist ---------------------------------------------------------------

class WaitlistRequestSchema(StrictSchema):
    seats = fields.Integer(required=True, strict=True, validate=[validate.Range(min=1), within_seats_per_hold],
                           metadata={"description": "How many seats (at most MAX_SEATS_PER_HOLD, default 10)"})


class WaitlistEntrySchema(Schema):
    id = fields.Integer(dump_only=True)
    showtime_id = fields.Integer(dump_only=True)
    seats = fields.Integer(dump_only=True)
    status = fields.String(dump_only=True, validate=validate.OneOf(
        [str(v) for v in WaitlistStatus]))
    position = fields.Integer(dump_only=True, allow_none=True,
                              metadata={"description": "Place in the queue while waiting"})
    offer_hold_id = fields.String(dump_only=True, allow_none=True,
                                  metadata={"description": "When offered: reserve with this hold"})
    offer_expires_at = mfields.DateTime(dump_only=True, allow_none=True)
    created_at = mfields.DateTime(dump_only=True)


class WebhookDataSchema(Schema):
    reservation_id = fields.Integer(required=True, strict=True)
    amount_cents = fields.Integer(required=True, strict=True)
    currency = fields.String(required=True, validate=CURRENCY)
    reference = fields.String(validate=validate.Length(max=64))


class WebhookEventSchema(InputSchema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    type = fields.String(required=True, validate=validate.Length(min=1, max=40),
                         metadata={"description": "charge.succeeded or charge.failed (others are ignored)"})
    data = fields.Nested(WebhookDataSchema, required=True)


class WebhookResultSchema(Schema):
    outcome = fields.String(dump_only=True)


# --- examples (OpenAPI): realistic, and each valid against its schema -----------

_AT = "2026-12-04T19:00:00+00:00"
CITY_IN = {"name": "Paris", "country": "France", "timezone": "Europe/Paris"}
CITY = {"id": 1, **CITY_IN, "created_at": "2026-11-02T09:00:00+00:00"}
THEATER_IN = {"name": "Opéra", "city_id": 1, "address": "2 Boulevard des Capucines, 75009 Paris",
              "latitude": 48.8708, "longitude": 2.3317}
THEATER = {"id": 3, **THEATER_IN, "created_at": "2026-11-02T09:05:00+00:00"}
LAYOUT = {"rows": [
    {"label": "A", "seats": ["wheelchair", "companion", None, "standard", "standard", "standard", "standard"]},
    {"label": "B", "seats": ["standard", "standard", None, "standard", "standard", "standard", "standard"]},
    {"label": "C", "seats": ["premium", "premium", None, "premium", "premium", "premium", "premium"]},
], "focal_point": {"x": 5, "y": 2.5}}
SCREEN_IN = {"name": "Salle 1", "layout": LAYOUT}
SCREEN = {"id": 7, "theater_id": 3, **SCREEN_IN, "seat_count": 18, "created_at": "2026-11-02T09:10:00+00:00"}
SCREEN_DETAIL = {**SCREEN, "seats": [
    {"id": 101, "label": "A1", "row": "A", "number": 1, "category": "wheelchair", "row_index": 0, "col_index": 0, "x": 1, "y": 1},
    {"id": 102, "label": "A2", "row": "A", "number": 2, "category": "companion", "row_index": 0, "col_index": 1, "x": 2, "y": 1},
    {"id": 103, "label": "A3", "row": "A", "number": 3, "category": "standard", "row_index": 0, "col_index": 3, "x": 4, "y": 1},
], "focal_point": {"x": 5.0, "y": 2.5}}
MOVIE_IN = {"title": "Heat", "duration_minutes": 170, "description": "A crew of thieves and the detective on "
            "their trail.", "genres": ["crime", "thriller"], "language": "en", "rating": "R",
            "release_date": "1995-12-15", "poster_url": "https://img.example.com/posters/heat.jpg"}
MOVIE = {"id": 12, **MOVIE_IN, "average_rating": 4.5, "review_count": 38, "created_at": "2026-11-01T08:00:00+00:00"}
PRICES = {"standard": 1250, "premium": 1650, "wheelchair": 1250, "companion": 1250}
SHOWTIME_IN = {"movie_id": 12, "screen_id": 7, "starts_at": _AT, "prices": PRICES, "currency": "EUR"}
SHOWTIME = {
    "id": 42, **SHOWTIME_IN, "ends_at": "2026-12-04T21:50:00+00:00", "created_at": "2026-11-03T10:00:00+00:00",
    "starts_at_local": "2026-12-04T20:00:00+01:00",
    "movie": {"id": 12, "title": "Heat", "duration_minutes": 170, "rating": "R"},
    "theater": {"id": 3, "name": "Opéra"},
    "city": {"id": 1, "name": "Paris", "timezone": "Europe/Paris"},
    "seats_available": 15,
}
SEAT_MAP = {"showtime_id": 42, "currency": "EUR", "focal_point": {"x": 5.0, "y": 2.5}, "seats": [
    {"id": 101, "label": "A1", "row": "A", "number": 1, "category": "wheelchair", "x": 1, "y": 1,
     "price_cents": 1250, "status": "available"},
    {"id": 103, "label": "A3", "row": "A", "number": 3, "category": "standard", "x": 4, "y": 1,
     "price_cents": 1250, "status": "held"},
    {"id": 113, "label": "C1", "row": "C", "number": 1, "category": "premium", "x": 1, "y": 3,
     "price_cents": 1650, "status": "booked"},
], "version": "1796151720000-0"}
BLOCK_SEATS_IN = {"seat_ids": [113, 114], "reason": "Broken armrests"}
BLOCKED_SEATS = {"showtime_id": 42, "seats": [
    {"seat_id": 113, "label": "C1", "reason": "Broken armrests", "blocked_by": 1, "blocked_at": "2026-12-01T17:02:00+00:00"},
    {"seat_id": 114, "label": "C2", "reason": "Broken armrests", "blocked_by": 1, "blocked_at": "2026-12-01T17:02:00+00:00"},
]}
HOLD_IN = {"seat_ids": [104, 105]}
HOLD = {"id": "42.9f86d081884c7d659a2feaa0c55ad015", "showtime_id": 42, "seat_ids": [104, 105],
        "expires_at": "2026-12-01T18:36:00+00:00",
        "seats": [{"id": 104, "price_cents": 1250}, {"id": 105, "price_cents": 1250}], "total_cents": 2500,
        "currency": "EUR"}
RESERVATION_IN = {"hold_id": HOLD["id"], "payment_token": "tok_visa"}
RESERVATION = {
    "id": 314, "user_id": 5, "status": "pending_payment", "showtime_id": 42,
    "seats": [{"id": 104, "label": "A4", "category": "standard", "price_cents": 1250},
              {"id": 105, "label": "A5", "category": "standard", "price_cents": 1250}],
    "total_cents": 2500, "discount_cents": 0, "currency": "EUR", "expires_at": "2026-12-01T18:40:00+00:00",
    "payment_status": "pending", "failure_reason": None,
    "created_at": "2026-12-01T18:30:00+00:00", "confirmed_at": None, "cancelled_at": None,
    "links": {"self": "/api/v1/reservations/314", "tickets": "/api/v1/reservations/314/tickets"},
}
RESERVATION_CANCELLED = {**RESERVATION, "status": "cancelled", "expires_at": None, "payment_status": "refund_pending",
                         "confirmed_at": "2026-12-01T18:30:04+00:00", "cancelled_at": "2026-12-02T09:00:00+00:00"}
_CODE = ("v2.kPrK_qmxVWaY.OTAxOjMxNDo0MjoxMDQ6MTc5NjQxMjgwMA."
         "3hX9rTqC0m1ZfE2yL0aVw8K5sJ7nP4dUo6bRg2cY1iHtQ9eWlMx3vNzk8pAfSjD7uBq0wGr5yTc2XhLeV4oI1g")
TICKET = {
    "id": 901, "reservation_id": 314, "code": _CODE, "seat_label": "A4", "status": "valid", "checked_in_at": None,
    "movie": {"id": 12, "title": "Heat"}, "theater": {"id": 3, "name": "Opéra"},
    "showtime": {"id": 42, "starts_at": _AT, "starts_at_local": "2026-12-04T20:00:00+01:00",
                 "timezone": "Europe/Paris"},
    "qr_url": f"/api/v1/tickets/{_CODE}/qr.png", "qr_svg_url": f"/api/v1/tickets/{_CODE}/qr.svg",
}
CHECKIN_IN = {"code": _CODE}
CHECKIN = {"status": "admitted", "code": _CODE, "seat_label": "A4", "showtime_id": 42, "reservation_id": 314,
           "checked_in_at": "2026-12-04T18:52:10+00:00", "checked_in_by": 57}
CHECKIN_BATCH_IN = {"scans": [{"code": _CODE, "scanned_at": "2026-12-04T18:52:10+00:00"},
                              {"code": "v2.kPrK_qmxVWaY.Zm9yZ2Vk.AAAA", "scanned_at": "2026-12-04T18:53:02+00:00"}]}
CHECKIN_BATCH = {"results": [
    {"code": _CODE, "status": "conflict", "scanned_at": "2026-12-04T18:52:10+00:00",
     "detail": "Another scan admitted this ticket first", "ticket_id": 901, "showtime_id": 42,
     "reservation_id": 314, "seat_label": "A4", "checked_in_at": "2026-12-04T18:51:40+00:00", "by": 58},
    {"code": "v2.kPrK_qmxVWaY.Zm9yZ2Vk.AAAA", "status": "invalid", "scanned_at": "2026-12-04T18:53:02+00:00",
     "detail": "This code is not a genuine Marquee ticket", "ticket_id": None, "showtime_id": None,
     "reservation_id": None, "seat_label": None, "checked_in_at": None, "by": None}],
    "counts": {"admitted": 0, "conflict": 1, "invalid": 1, "cancelled": 0, "forbidden": 0}}
CHECKIN_LIST = [{"ticket_id": 901, "code": _CODE, "reservation_id": 314, "seat_id": 104, "seat_label": "A4",
                 "status": "valid", "checked_in": False, "checked_in_at": None}]
JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                  "kid": "kPrK_qmxVWaY", "use": "sig", "alg": "EdDSA"}]}
TICKET_KEY_ROTATION = {"key": {**JWKS["keys"][0], "kid": "c2Vjb25kS2V5", "x": "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08"},
                       "retired_kid": "kPrK_qmxVWaY"}
REVIEW_IN = {"rating": 5, "text": "The bank scene alone is worth the ticket."}
REVIEW_ACCEPTED = {"status": "accepted"}
REVIEW_LIST = {"movie_id": 12, "page": 1, "page_size": 10, "total": 1, "average_rating": 4.5, "review_count": 1,
               "items": [{"id": 77, "user_id": 5, "movie_id": 12, **REVIEW_IN,
                          "created_at": "2026-12-05T10:00:00+00:00", "updated_at": "2026-12-05T10:00:00+00:00"}]}
WAITING_ROOM_IN = {"opens_at": "2026-12-01T10:00:00+00:00", "admit_per_minute": 120, "max_active": 60,
                   "session_seconds": 300}
WAITING_ROOM = {"showtime_id": 42, **WAITING_ROOM_IN, "stats": {
    "pre_queue": 0, "waiting": 1840, "admitted": 312, "active": 58, "serving_number": 312, "last_number": 2152,
    "admissions_last_minute": 120, "expired": 21, "done": 233, "left": 17, "joined": 2169}}
QUEUE_ENTRY = {"id": "42.9f86d081884c7d65", "showtime_id": 42, "status": "waiting", "number": 1017, "position": 705,
               "estimated_wait_seconds": 353, "opens_at": "2026-12-01T10:00:00+00:00"}
QUEUE_STATUS = {"showtime_id": 42, "serving_number": 312, "last_number": 2152, "admit_per_minute": 120,
                "max_active": 60, "opens_at": "2026-12-01T10:00:00+00:00", "open": True}
WAITLIST_IN = {"seats": 2}
WAITLIST_ENTRY = {"id": 8, "showtime_id": 42, "seats": 2, "status": "waiting", "position": 3,
                  "offer_hold_id": None, "offer_expires_at": None, "created_at": "2026-12-01T18:31:00+00:00"}
WEBHOOK_IN = {"id": "evt_1QdZ2y", "type": "charge.succeeded",
              "data": {"reservation_id": 314, "amount_cents": 2500, "currency": "EUR", "reference": "ch_3f9a1c"}}
WEBHOOK_RESULT = {"outcome": "confirmed"}
REGISTER_IN = {"email": "ada@example.com", "password": "correct horse battery staple", "name": "Ada Lovelace"}
USER = {"id": 5, "email": "ada@example.com", "name": "Ada Lovelace", "role": "user",
        "created_at": "2026-11-02T09:00:00+00:00"}
LOGIN_IN = {"email": "ada@example.com", "password": "correct horse battery staple"}
TOKEN_PAIR = {"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1In0.c2lnbmF0dXJl",
              "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1IiwidHlwZSI6InJlZnJlc2gifQ.c2ln",
              "token_type": "Bearer", "expires_in": 900}
