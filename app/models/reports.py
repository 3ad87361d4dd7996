"""What the reports read: the daily sales summary, kept by triggers (migration 0019)."""
from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class SalesDaily(Base):
    """Per showtime, local day (its theater's city time zone) and currency: successful
    charges (``gross_cents``) with the discounts of the reservations charged, successful
    refunds, and the net change of live tickets (+seats on confirmation, -seats when a
    confirmed reservation is cancelled). Written only by the triggers on ``payments``
    and ``reservations``, in the transaction of the write, so it always equals their sums."""

    __tablename__ = "sales_daily"

    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    gross_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    discount_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    refund_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tickets: Mapped[int] = mapped_column(Integer, server_default="0")
    charges: Mapped[int] = mapped_column(Integer, server_default="0")
    refunds: Mapped[int] = mapped_column(Integer, server_default="0")


class SalesTheaterDaily(Base):
    """``SalesDaily`` summed by theater (same triggers, same transaction): what the
    reports by day, week, month and theater read."""

    __tablename__ = "sales_theater_daily"

    theater_id: Mapped[int] = mapped_column(ForeignKey("theaters.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    gross_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    discount_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    refund_cents: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tickets: Mapped[int] = mapped_column(Integer, server_default="0")
