"""Reviews: checked at the door, written by the worker.

The API accepts a review (202) only from a customer with a confirmed reservation
for the movie whose showtime has started, and hands it to the queue through the
outbox. The worker writes it (one per user and movie: a second replaces the
first) and recomputes the movie's ``average_rating`` and ``review_count`` from
the reviews themselves while holding the movie's row lock, so concurrent reviews
keep them exact.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import Movie, Reservation, ReservationStatus, Review, Showtime
from app.services import errors, outbox
from app.services.pagination import page_of


class NotEligible(errors.Forbidden):
    code, title = "not_eligible", "You can review a movie you have seen"


def submit_review(user_id: int, movie_id: int, rating: int, text: str) -> None:
    """Accept a review for the worker, or refuse it now."""
    with db.unit_of_work():
        if db.session.get(Movie, movie_id) is None:
            raise errors.NotFound(f"Movie {movie_id} does not exist")
        seen = db.session.scalar(select(exists().where(
            Reservation.user_id == user_id, Reservation.status == ReservationStatus.CONFIRMED,
            Reservation.showtime_id == Showtime.id, Showtime.movie_id == movie_id,
            Showtime.starts_at <= datetime.now(timezone.utc))))
        if not seen:
            raise NotEligible("Only customers with a confirmed ticket for a showing that has started can review")
        outbox.add({"topic": "reviews.submit", "aggregate_id": f"movie:{movie_id}", "payload": {
            "user_id": user_id, "movie_id": movie_id, "rating": rating, "text": text}})


def apply_review(payload: dict) -> str:
    """The worker's half: upsert the review and recompute the movie's aggregates (idempotent)."""
    movie_id, user_id = int(payload["movie_id"]), int(payload["user_id"])
    now = datetime.now(timezone.utc)
    with db.unit_of_work():
        movie = db.session.scalar(select(Movie).where(Movie.id == movie_id).with_for_update())
        if movie is None:
            raise errors.NotFound(f"Movie {movie_id} does not exist")
        db.session.execute(
            pg_insert(Review).values(user_id=user_id, movie_id=movie_id, rating=int(payload["rating"]),
                                     text=payload["text"], updated_at=now)
            .on_conflict_do_update(index_elements=["user_id", "movie_id"],
                                   set_={"rating": int(payload["rating"]), "text": payload["text"],
                                         "updated_at": now})
        )
        count, average = db.session.execute(
            select(func.count(Review.id), func.avg(Review.rating)).where(Review.movie_id == movie_id)).one()
        movie.review_count, movie.average_rating = count, round(average, 2) if average is not None else None
    marquee().cache.invalidate("movies")
    return "reviewed"


def list_reviews(movie_id: int, page: int, page_size: int) -> tuple[Movie, list[Review], int]:
    movie = db.session.get(Movie, movie_id)
    if movie is None:
        raise errors.NotFound(f"Movie {movie_id} does not exist")
    items, total = page_of(select(Review).where(Review.movie_id == movie_id),
                           [Review.updated_at.desc(), Review.id.desc()], page, page_size)
    return movie, items, total
