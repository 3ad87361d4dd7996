"""The Ed25519 keys that sign ticket codes (``app.services.ticket_keys``)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, LargeBinary, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class TicketKey(Base):
    """One signing key. The current one (``retired_at`` NULL, at most one) signs new
    tickets; a retired one has lost its private half and stays published in the JWKS
    until ``signed_until``, the latest end of a showtime it signed a ticket for."""

    __tablename__ = "ticket_keys"
    __table_args__ = (
        CheckConstraint("octet_length(public_key) = 32", name="public_key_size"),
        CheckConstraint("retired_at IS NOT NULL OR private_key_encrypted IS NOT NULL", name="current_can_sign"),
        Index("uq_ticket_keys_current", text("(retired_at IS NULL)"), unique=True,
              postgresql_where=text("retired_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kid: Mapped[str] = mapped_column(String(32), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # raw 32 bytes
    # AES-256-GCM (nonce || ciphertext || tag) of the 32-byte seed; never leaves the service
    private_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
