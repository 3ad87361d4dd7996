"""Pages of query results, shared by the services that list things."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from app import db


def page_of(query, order_by: Iterable, page: int, page_size: int, *, rows: bool = False) -> tuple[list, int]:
    """One page of ``query`` and the total count. A page past the end is empty
    (and costs no second query), however large its number."""
    total = int(db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    offset = (page - 1) * page_size
    if offset >= total:
        return [], total
    paged = query.order_by(*order_by).limit(page_size).offset(offset)
    result = db.session.execute(paged).all() if rows else db.session.scalars(paged).all()
    return list(result), total
