"""Demo data for ``make up``: idempotent, and it keeps showtimes in the future.

Customers ``customer1@demo.marquee.test`` ... share the password ``DEMO_PASSWORD``
(stated in the README); they share one argon2id hash too, which is fine for
throw-away demo accounts and keeps seeding fast.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import City, Movie, Screen, Showtime, Theater, User, WaitingRoom
from app.services import catalog, waiting_room

DEMO_PASSWORD = "marquee-demo"
DEMO_EMAIL = "customer{n}@demo.marquee.test"

CITIES = [
    {"name": "Paris", "country": "France", "timezone": "Europe/Paris", "theaters": [
        {"name": "Marquee Opéra", "address": "2 Boulevard des Capucines, 75009 Paris",
         "latitude": 48.8708, "longitude": 2.3319},
        {"name": "Marquee Bastille", "address": "5 Rue du Faubourg Saint-Antoine, 75011 Paris",
         "latitude": 48.8530, "longitude": 2.3708},
    ]},
    {"name": "Lyon", "country": "France", "timezone": "Europe/Paris", "theaters": [
        {"name": "Marquee Bellecour", "address": "10 Place Bellecour, 69002 Lyon",
         "latitude": 45.7578, "longitude": 4.8320},
    ]},
]

MOVIES = [
    {"title": "The Last Reel", "duration_minutes": 118, "genres": ["drama"], "language": "en",
     "rating": "PG-13", "release_date": date(2026, 10, 2),
     "description": "A projectionist's final night at a closing cinema."},
    {"title": "Orbit of Ash", "duration_minutes": 142, "genres": ["sci-fi", "thriller"],
     "language": "en", "rating": "PG-13", "release_date": date(2026, 11, 6),
     "description": "A salvage crew finds a ship that should not exist."},
    {"title": "Le Petit Matin", "duration_minutes": 96, "genres": ["comedy", "romance"],
     "language": "fr", "rating": "U", "release_date": date(2026, 9, 18),
     "description": "Two bakers, one oven, and a very early morning."},
    {"title": "Cartographers", "duration_minutes": 104, "genres": ["documentary"],
     "language": "en", "rating": "U", "release_date": date(2026, 8, 21),
     "description": "The people who still draw maps by hand."},
]

DEMO_THEATERS = [t["name"] for c in CITIES for t in c["theaters"]]

PRICES = {"standard": 1200, "premium": 1600, "recliner": 2200, "wheelchair": 1200, "companion": 1200}


def grand_layout() -> dict:
    """16 rows of 20 (320 seats): the popular screen for rush tests."""
    rows = []
    for i in range(16):
        label = chr(ord("A") + i)
        category = "recliner" if i >= 13 else "premium" if 6 <= i <= 9 else "standard"
        seats = [category] * 10 + [None] + [category] * 10
        if i == 0:  # wheelchair spaces at both ends of the front row, a companion seat beside each
            seats[0] = seats[-1] = "wheelchair"
            seats[1] = seats[-2] = "companion"
        rows.append({"label": label, "seats": seats})
    # the best place to sit: the middle of the room (the aisle), about two thirds back
    return {"rows": rows, "focal_point": {"x": 11, "y": 11}}


def small_layout() -> dict:
    return {"rows": [{"label": chr(ord("A") + i), "seats": ["standard"] * 6 + [None] + ["standard"] * 6}
                     for i in range(8)]}


# The on-sale of the demo: a waiting room that opens a few minutes after each `make up`.
ONSALE_OPENS_IN = timedelta(minutes=3)
ONSALE_SETTINGS = {"admit_per_minute": 120, "max_active": 60, "session_seconds": 300}


def seed(customers: int = 1000) -> str:
    created = _seed_catalog()
    added_shows = _top_up_showtimes()
    added_users = _seed_customers(customers)
    onsale = _arm_onsale()
    return (f"demo data: catalog {'created' if created else 'present'}, "
            f"{added_shows} showtimes added, {added_users} customers added "
            f"(password {DEMO_PASSWORD!r}){onsale}")


def _arm_onsale() -> str:
    """Tomorrow's 20:00 show on the first demo theater's Grand screen gets a waiting room
    opening ONSALE_OPENS_IN from now (a fresh queue if an earlier one had opened)."""
    showtime_id = db.session.scalar(
        select(Showtime.id).join(Screen, Screen.id == Showtime.screen_id).join(Theater, Theater.id == Screen.theater_id)
        .where(Theater.name == DEMO_THEATERS[0], Screen.name == "Grand",
               Showtime.starts_at > datetime.now(timezone.utc) + timedelta(days=1))
        .order_by(Showtime.starts_at.desc()).limit(1))
    if showtime_id is None:
        return ""
    db.session.commit()  # end the read: the waiting room's changes are units of work of their own
    opens_at = datetime.now(timezone.utc) + ONSALE_OPENS_IN
    room = db.session.get(WaitingRoom, showtime_id)
    if room is not None and room.opens_at <= datetime.now(timezone.utc):
        waiting_room.disable(showtime_id, actor=None)
    elif room is not None:
        opens_at = room.opens_at
    waiting_room.configure(showtime_id, opens_at.replace(microsecond=0), **ONSALE_SETTINGS, actor=None)
    return f"; showtime {showtime_id} has a waiting room opening at {opens_at:%H:%M:%S} UTC"


def _seed_catalog() -> bool:
    if db.session.scalar(select(Theater.id).where(Theater.name.in_(DEMO_THEATERS)).limit(1)) is not None:
        return False
    for city_data in CITIES:
        city = db.session.scalar(
            select(City).where(City.name == city_data["name"], City.country == city_data["country"])
        ) or catalog.create_city({k: city_data[k] for k in ("name", "country", "timezone")}, actor=None)
        for t in city_data["theaters"]:
            theater = catalog.create_theater(dict(t, city_id=city.id), actor=None)
            catalog.create_screen(theater.id, {"name": "Grand", "layout": grand_layout()}, actor=None)
            catalog.create_screen(theater.id, {"name": "Studio", "layout": small_layout()}, actor=None)
    for movie in MOVIES:
        catalog.create_movie(dict(movie), actor=None)
    return True


def _top_up_showtimes(days: int = 7) -> int:
    """Each demo screen gets fixed daily slots for the coming days, where missing."""
    movies = db.session.scalars(select(Movie).order_by(Movie.id)).all()
    if not movies:
        return 0
    added = 0
    screens = db.session.execute(
        select(Screen, City.timezone)
        .join(Theater, Theater.id == Screen.theater_id)
        .join(City, City.id == Theater.city_id)
        .where(Theater.name.in_(DEMO_THEATERS))  # never schedule on an admin's own screens
        .order_by(Screen.id)
    ).all()
    slots = (time(13, 0), time(16, 30), time(20, 0))
    for s_index, (screen, tz) in enumerate(screens):
        zone = ZoneInfo(tz)
        today = datetime.now(zone).date()
        for d in range(days):
            for k, slot in enumerate(slots):
                starts = datetime.combine(today + timedelta(days=d), slot, tzinfo=zone)
                if starts <= datetime.now(zone):
                    continue
                exists = db.session.scalar(
                    select(Showtime.id).where(Showtime.screen_id == screen.id, Showtime.starts_at == starts)
                )
                if exists:
                    continue
                movie = movies[(s_index + k + d) % len(movies)]
                catalog.create_showtime({
                    "movie_id": movie.id, "screen_id": screen.id, "starts_at": starts,
                    "prices": PRICES, "currency": "EUR",
                }, actor=None)
                added += 1
    return added


def _seed_customers(count: int) -> int:

    hashed = marquee().passwords.hash(DEMO_PASSWORD)
    rows = [{"email": DEMO_EMAIL.format(n=n), "name": f"Demo Customer {n}",
             "password_hash": hashed, "role": "user"} for n in range(1, count + 1)]
    if not rows:
        return 0
    with db.unit_of_work():
        result = db.session.execute(
            pg_insert(User).values(rows).on_conflict_do_nothing(index_elements=["email"]).returning(User.id)
        )
        return len(result.all())
