"""Cities, theaters, screens with their seats, movies and showtimes."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base


class City(Base):
    __tablename__ = "cities"
    __table_args__ = (UniqueConstraint("name", "country", postgresql_nulls_not_distinct=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    country: Mapped[str | None] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Theater(Base):
    __tablename__ = "theaters"
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="coordinates_paired"),
        Index("ix_theaters_latitude_longitude", "latitude", "longitude"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    city_id: Mapped[int] = mapped_column(
        ForeignKey("cities.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # {cutoff_minutes, fee_percent?, fee_cents?}; None: the site-wide cut-off, full refund (services.refunds)
    refund_policy: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Screen(Base):
    __tablename__ = "screens"
    __table_args__ = (UniqueConstraint("theater_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    theater_id: Mapped[int] = mapped_column(
        ForeignKey("theaters.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    layout: Mapped[dict] = mapped_column(JSONB)
    seat_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    seats: Mapped[list["Seat"]] = relationship(
        order_by="(Seat.row_index, Seat.col_index)", lazy="raise_on_sql", viewonly=True
    )


class Seat(Base):
    """One seat of a screen. Ids are stable across layout edits that keep its label."""

    __tablename__ = "seats"
    __table_args__ = (
        UniqueConstraint("screen_id", "label"),
        CheckConstraint("number > 0", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Seats go with their screen; bookings referencing a seat (RESTRICT) stop that.
    screen_id: Mapped[int] = mapped_column(
        ForeignKey("screens.id", ondelete="CASCADE"), index=True
    )
    row_label: Mapped[str] = mapped_column(String(8))
    number: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    row_index: Mapped[int] = mapped_column(Integer)
    col_index: Mapped[int] = mapped_column(Integer)


class Movie(Base):
    __tablename__ = "movies"
    __table_args__ = (
        CheckConstraint("duration_minutes BETWEEN 1 AND 1440", name="duration_range"),
        Index("ix_movies_genres", "genres", postgresql_using="gin"),
        Index("ix_movies_language_lower", func.lower(Column("language"))),
        Index(
            "ix_movies_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    genres: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    language: Mapped[str | None] = mapped_column(String(40))
    rating: Mapped[str | None] = mapped_column(String(16))
    release_date: Mapped[date | None] = mapped_column(Date)
    poster_url: Mapped[str | None] = mapped_column(String(2000))
    # Kept exact by the review handler, under the movie's row lock.
    average_rating: Mapped[float | None] = mapped_column(Numeric(3, 2))
    review_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Showtime(Base):
    """A movie on a screen at a time. Overlaps on one screen are refused by the
    exclusion constraint ``ex_showtimes_no_overlap`` (see the migration)."""

    __tablename__ = "showtimes"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("orphan_seats IN ('prevent', 'allow')", name="orphan_seats_known"),
        Index("ix_showtimes_movie_id_starts_at", "movie_id", "starts_at"),
        Index("ix_showtimes_screen_id_starts_at", "screen_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="RESTRICT"))
    screen_id: Mapped[int] = mapped_column(ForeignKey("screens.id", ondelete="RESTRICT"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prices: Mapped[dict] = mapped_column(JSONB)
    currency: Mapped[str] = mapped_column(String(3))
    # "prevent": a hold by seat that would leave a free seat alone is refused (API.md)
    orphan_seats: Mapped[str] = mapped_column(String(8), server_default="prevent")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
