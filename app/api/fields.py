"""Marshmallow fields for dumping data that may already be serialized.

Cached reads hold the JSON that was dumped the first time; dumping them again
through the same response schema must leave them unchanged. Only date and time
fields are not idempotent by nature, so they pass strings through.
"""
from __future__ import annotations

from marshmallow import fields


class DateTime(fields.AwareDateTime):
    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)


class Date(fields.Date):
    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)
