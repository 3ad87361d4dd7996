"""The audit log: every staff write and security event, append-only.

A write's entry is added to the session of the unit of work that makes the write,
so the two commit or roll back together (``record`` never commits). A security event
with no write of its own (a failed sign-in) is recorded in a unit of work of its own
(``record_event``). The table refuses UPDATE, DELETE and TRUNCATE (migration 0017).

Actions are dotted names, object first: ``theater.update``, ``price_rule.create``,
``user.roles.set``, ``auth.login_failed``, ``auth.mfa.enabled``.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect, select

from app import db
from app.logging_setup import client_address_var, request_id_var
from app.models import AuditEntry
from app.services.pagination import page_of


def _plain(value: Any) -> Any:
    """JSON for a column value: datetimes and dates in ISO 8601, decimals as strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value, default=str))


def snapshot(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict | None:
    """A model's columns as JSON (``before`` and ``after`` of an entry); secrets are
    excluded by the caller (``exclude``), never logged."""
    if obj is None:
        return None
    mapper = inspect(obj).mapper
    return {attr.key: _plain(getattr(obj, attr.key)) for attr in mapper.column_attrs if attr.key not in exclude}


def record(action: str, *, actor_id: int | None, object_type: str | None = None, object_id: Any = None,
           before: dict | None = None, after: dict | None = None, ip: str | None = None) -> AuditEntry:
    """Add an entry to the caller's unit of work (same transaction as the change). The
    request id and, unless given, the client's address come from the request in hand."""
    if ip is None:
        address = client_address_var.get()
        ip = address() if address is not None else None
    entry = AuditEntry(
        action=action, actor_id=actor_id, object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        before=_plain(before) if before is not None else None,
        after=_plain(after) if after is not None else None,
        request_id=request_id_var.get(), ip=ip,
    )
    db.session.add(entry)
    return entry


def record_event(action: str, *, actor_id: int | None, ip: str | None = None, **details: Any) -> None:
    """A security event in its own transaction (nothing else to commit with it)."""
    with db.unit_of_work():
        record(action, actor_id=actor_id, object_type=details.pop("object_type", None),
               object_id=details.pop("object_id", None), after=details or None, ip=ip)


def list_entries(*, actor_id: int | None = None, action: str | None = None, since: datetime | None = None,
                 object_type: str | None = None, page: int = 1, page_size: int = 50) -> tuple[list[AuditEntry], int]:
    """Newest first. ``action`` matches exactly or, ending in ``.``/``*``, as a prefix."""
    query = select(AuditEntry)
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    if action:
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            query = query.where(AuditEntry.action.startswith(prefix, autoescape=True))
        else:
            query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    return page_of(query, [AuditEntry.id.desc()], page, page_size)
