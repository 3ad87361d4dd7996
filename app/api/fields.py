"""Marshmallow fields for dates and times.

On input: offsets are required (AwareDateTime), instants are normalised to UTC
and kept within a sane range, so nothing PostgreSQL would refuse gets that far
(it accepts offsets up to ±15:59 only; Python up to ±23:59).

On output: cached reads hold the JSON dumped the first time, and dumping them
again through the same response schema must leave them unchanged. Only date and
time fields are not idempotent by nature, so they pass strings through.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from marshmallow import ValidationError, fields

EARLIEST = date(1900, 1, 1)
LATEST = date(2200, 1, 1)
_RANGE_ERROR = f"Must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"


class DateTime(fields.AwareDateTime):
    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST <= parsed.date() < LATEST:
            raise ValidationError(_RANGE_ERROR)
        return parsed.astimezone(timezone.utc)


class Date(fields.Date):
    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> date:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST <= parsed < LATEST:
            raise ValidationError(_RANGE_ERROR)
        return parsed
