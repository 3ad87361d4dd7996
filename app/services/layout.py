"""Screen layouts: rows of seats and gaps, turned into seat specifications.

A layout looks like ``{"rows": [{"label": "A", "seats": ["standard", null, "premium"]}]}``:
``null`` is a gap (an aisle), every other entry a seat of that category. Seats
are numbered from 1 within their row, skipping gaps, so the example gives A1,
(gap), A2. This module is pure: no database, easy to test.

Geometry (API.md): a seat is at ``x`` (its 1-based position in the row, gaps
counted) and ``y`` (its 1-based row, row 1 nearest the screen). A layout may set
``focal_point {x, y}``, the best place to sit; by default the middle of the widest
row, two thirds of the way back (``focal_point``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.services.seat_choice import SeatPlace, default_focal_point

MAX_ROWS = 200
MAX_ROW_WIDTH = 500
MAX_SEATS = 20_000
CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ROW_LABEL = re.compile(r"^[A-Za-z0-9]{1,4}$")


@dataclass(frozen=True)
class SeatSpec:
    row_label: str
    number: int
    label: str
    category: str
    row_index: int
    col_index: int


class LayoutError(ValueError):
    """A layout that cannot be built; ``messages`` says why, for the client."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def build_seats(layout: dict) -> list[SeatSpec]:
    """Expand a layout into its seats, or raise ``LayoutError`` with every problem found."""
    problems: list[str] = []
    rows = layout.get("rows") if isinstance(layout, dict) else None
    if not isinstance(rows, list) or not rows:
        raise LayoutError(["layout.rows must be a non-empty list"])
    if len(rows) > MAX_ROWS:
        raise LayoutError([f"at most {MAX_ROWS} rows"])
    seats: list[SeatSpec] = []
    seen_rows: set[str] = set()
    seen_labels: set[str] = set()
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"row {r}: must be an object with label and seats")
            continue
        label, entries = row.get("label"), row.get("seats")
        if not isinstance(label, str) or not ROW_LABEL.match(label):
            problems.append(f"row {r}: label must be 1-4 letters or digits")
            continue
        if label in seen_rows:
            problems.append(f"row {label}: label used twice")
            continue
        seen_rows.add(label)
        if not isinstance(entries, list) or not entries:
            problems.append(f"row {label}: seats must be a non-empty list")
            continue
        if len(entries) > MAX_ROW_WIDTH:
            problems.append(f"row {label}: at most {MAX_ROW_WIDTH} positions")
            continue
        number = 0
        collided = False
        for c, category in enumerate(entries):
            if category is None:
                continue
            if not isinstance(category, str) or not CATEGORY.match(category):
                problems.append(f"row {label} position {c + 1}: category must match {CATEGORY.pattern} or be null")
                continue
            number += 1
            seat_label = f"{label}{number}"
            if seat_label in seen_labels:
                if not collided:
                    problems.append(f"row {label}: seat label {seat_label} collides with another row's")
                    collided = True
                continue
            seen_labels.add(seat_label)
            seats.append(SeatSpec(label, number, seat_label, category, r, c))
        if number == 0:
            problems.append(f"row {label}: has no seats")
    if len(seats) > MAX_SEATS:
        problems.append(f"at most {MAX_SEATS} seats per screen")
    problems += _check_focal_point(layout, rows)
    if problems:
        raise LayoutError(problems[:50])
    return seats


def focal_point(layout: dict, seats: list[SeatSpec] | None = None) -> dict[str, float]:
    """The layout's focal point ``{x, y}``: its own, or the default (API.md)."""
    given = layout.get("focal_point") if isinstance(layout, dict) else None
    if given:
        return {"x": float(given["x"]), "y": float(given["y"])}
    places = [SeatPlace(0, s.col_index + 1, s.row_index + 1, s.category) for s in (seats or build_seats(layout))]
    x, y = default_focal_point(places)
    return {"x": x, "y": round(y, 4)}


def _check_focal_point(layout: dict, rows: list) -> list[str]:
    given = layout.get("focal_point")
    if given is None:
        return []
    if not isinstance(given, dict) or set(given) != {"x", "y"}:
        return ["focal_point must be an object with x and y"]
    x, y = given["x"], given["y"]
    width = max((len(r.get("seats") or []) for r in rows if isinstance(r, dict)), default=0)
    problems = []
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 1 <= x <= max(width, 1):
        problems.append(f"focal_point.x must be a position from 1 to {max(width, 1)}")
    if isinstance(y, bool) or not isinstance(y, (int, float)) or not 1 <= y <= len(rows):
        problems.append(f"focal_point.y must be a row from 1 to {len(rows)}")
    return problems


def categories(seats: list[SeatSpec]) -> set[str]:
    return {s.category for s in seats}
