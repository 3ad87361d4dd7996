"""What selling needs beyond the catalog's prices: price rules and vouchers."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, SmallInteger, String, Time, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class PriceRule(Base):
    """An adjustment of a showtime's category price where its scope and conditions match
    (``app.services.pricing`` applies them). Scope columns left null match everything."""

    __tablename__ = "price_rules"
    __table_args__ = (
        CheckConstraint("(percent IS NULL) <> (amount_cents IS NULL)", name="one_adjustment"),
        CheckConstraint("percent IS NULL OR percent >= -100", name="percent_range"),
        CheckConstraint("occupancy_min IS NULL OR occupancy_min BETWEEN 1 AND 100", name="occupancy_range"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    theater_id: Mapped[int | None] = mapped_column(ForeignKey("theaters.id", ondelete="CASCADE"), index=True)
    movie_id: Mapped[int | None] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"), index=True)
    showtime_id: Mapped[int | None] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    weekdays: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger))  # ISO: 1 Monday .. 7 Sunday
    local_time_from: Mapped[time | None] = mapped_column(Time)
    local_time_to: Mapped[time | None] = mapped_column(Time)
    days_before_max: Mapped[int | None] = mapped_column(Integer)
    days_before_min: Mapped[int | None] = mapped_column(Integer)
    occupancy_min: Mapped[int | None] = mapped_column(SmallInteger)  # percent of sellable seats taken
    percent: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Voucher(Base):
    """A discount code. ``code`` is stored lower-case (codes are case-insensitive);
    ``uses`` counts live redemptions and never passes ``max_uses`` (a CHECK as well)."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("(percent_off IS NULL) <> (amount_off_cents IS NULL)", name="one_discount"),
        CheckConstraint("uses >= 0", name="uses_positive"),
        CheckConstraint("max_uses IS NULL OR uses <= max_uses", name="uses_within_limit"),
        CheckConstraint("code = lower(code)", name="code_normalized"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    percent_off: Mapped[int | None] = mapped_column(SmallInteger)
    amount_off_cents: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))  # of amount_off_cents
    max_uses: Mapped[int | None] = mapped_column(Integer)
    max_uses_per_user: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    theater_id: Mapped[int | None] = mapped_column(ForeignKey("theaters.id", ondelete="CASCADE"))
    movie_id: Mapped[int | None] = mapped_column(ForeignKey("movies.id", ondelete="CASCADE"))
    showtime_id: Mapped[int | None] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class VoucherRedemption(Base):
    """One reservation's use of a voucher; ``returned_at`` once the reservation ended
    unpaid or was cancelled (its use given back, exactly once)."""

    __tablename__ = "voucher_redemptions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id", ondelete="RESTRICT"))
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    discount_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    returned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
