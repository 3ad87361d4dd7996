"""What running a cinema chain on Marquee needs: staff roles scoped to theaters and
the append-only audit log."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class StaffRole(StrEnum):
    MANAGER = "manager"  # writes the catalog of their theaters, reads their reports
    SCANNER = "scanner"  # checks in the tickets of their theaters


class UserRole(Base):
    """A staff role of a user at one theater (``users.role`` stays ``user`` or ``admin``)."""

    __tablename__ = "user_roles"
    __table_args__ = (
        CheckConstraint("role IN ('manager', 'scanner')", name="role_known"),
        UniqueConstraint("user_id", "role", "theater_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    theater_id: Mapped[int] = mapped_column(ForeignKey("theaters.id", ondelete="CASCADE"), index=True)
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEntry(Base):
    """One staff write or security event. Append-only: a trigger (migration 0017)
    refuses UPDATE, DELETE and TRUNCATE, so not even the app can rewrite history."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # no FK: entries outlive erased accounts
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(64))
