"""Choosing seats: the rules of best available and of orphan seats, as plain Python.

This module is the specification the seat store's atomic step follows (API.md, "Seat
geometry and choosing seats"); it is pure (no Redis, no database), so the rules are
tested exhaustively here and the atomic implementation is checked against it.

Geometry: a seat is at ``x`` (1-based position in its row, gaps counted) and ``y``
(1-based row, row 1 nearest the screen). A *run* is a maximal stretch of seats at
consecutive positions of one row whose seats are all available; gaps, row ends and
unavailable seats end a run.

Orphans: taking seats *strands* an available seat when it leaves it alone in its run
(no available neighbour) while it had one before. With ``orphan_seats = "prevent"`` a
hold that strands a seat is refused, unless some run it takes from has exactly one seat
more than it takes from that run (then every placement there strands one).

Best available for a party of ``n`` (optionally one ``category``): the first rule that
finds a placement wins:

1. ``n`` seats side by side in one row stranding no seat, nearest the focal point;
2. the same, stranding one seat;
3. split over neighbouring rows, each part at least two seats side by side, stranding as
   few seats as possible, nearest the focal point.

Distance and tie-break (deterministic): a placement's centre is the mean ``x`` and mean
``y`` of its seats; its distance is the Euclidean distance from that centre to the focal
point; ties go to the smaller ``y`` (nearer the screen), then the smaller first ``x``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SeatPlace:
    id: int
    x: int
    y: int
    category: str


@dataclass(frozen=True)
class Placement:
    seat_ids: tuple[int, ...]
    stranded: int
    distance: float
    rule: int


def default_focal_point(seats: Iterable[SeatPlace]) -> tuple[float, float]:
    """The middle of the widest row, two thirds of the way back (API.md)."""
    by_row: dict[int, list[int]] = {}
    for seat in seats:
        by_row.setdefault(seat.y, []).append(seat.x)
    if not by_row:
        return (1.0, 1.0)
    widest = max(by_row.values(), key=lambda xs: (max(xs) - min(xs), -min(xs)))
    rows = max(by_row)
    return ((min(widest) + max(widest)) / 2, 1 + (rows - 1) * 2 / 3)


def runs(seats: Sequence[SeatPlace], available: set[int]) -> list[list[SeatPlace]]:
    """Maximal runs of available seats at consecutive positions of one row, in row then x order."""
    out: list[list[SeatPlace]] = []
    current: list[SeatPlace] = []
    for seat in sorted(seats, key=lambda s: (s.y, s.x)):
        if seat.id in available and current and current[-1].y == seat.y and current[-1].x == seat.x - 1:
            current.append(seat)
            continue
        if current:
            out.append(current)
        current = [seat] if seat.id in available else []
    if current:
        out.append(current)
    return out


def stranded_by(seats: Sequence[SeatPlace], available: set[int], taking: set[int]) -> list[int]:
    """Available seats the taking would leave alone that had a neighbour before."""
    alone_before = {run[0].id for run in runs(seats, available) if len(run) == 1}
    after = runs(seats, available - taking)
    return sorted(run[0].id for run in after if len(run) == 1 and run[0].id not in alone_before)


def orphan_exempt(seats: Sequence[SeatPlace], available: set[int], taking: set[int]) -> bool:
    """A run the hold takes from has exactly one seat more than it takes from it."""
    for run in runs(seats, available):
        taken = sum(1 for s in run if s.id in taking)
        if taken and len(run) == taken + 1:
            return True
    return False


def orphans_refused(seats: Sequence[SeatPlace], available: set[int], taking: set[int]) -> list[int]:
    """The seats a hold of ``taking`` would strand, if the orphan rule refuses it (else [])."""
    stranded = stranded_by(seats, available, taking)
    if stranded and not orphan_exempt(seats, available, taking):
        return stranded
    return []


def _distance(chosen: Sequence[SeatPlace], focal: tuple[float, float]) -> float:
    cx = sum(s.x for s in chosen) / len(chosen)
    cy = sum(s.y for s in chosen) / len(chosen)
    return math.hypot(cx - focal[0], cy - focal[1])


def _key(p: Placement, by_id: dict[int, SeatPlace]) -> tuple:
    first = by_id[p.seat_ids[0]]
    return (p.stranded, round(p.distance, 9), min(by_id[i].y for i in p.seat_ids), first.x, p.seat_ids)


def _in_row_windows(run: list[SeatPlace], n: int, category: str | None) -> Iterable[list[SeatPlace]]:
    for start in range(len(run) - n + 1):
        window = run[start:start + n]
        if category is None or all(s.category == category for s in window):
            yield window


def best_available(seats: Sequence[SeatPlace], available: set[int], n: int, *,
                   category: str | None = None, focal: tuple[float, float] | None = None,
                   max_rows: int = 3) -> Placement | None:
    """The placement the rules choose for a party of ``n``, or None (not enough seats).

    ``max_rows`` bounds how many neighbouring rows a split may use (rule 3)."""
    if n < 1:
        return None
    focal = focal or default_focal_point(seats)
    by_id = {s.id: s for s in seats}
    all_runs = runs(seats, available)
    single: list[Placement] = []
    for run in all_runs:
        for window in _in_row_windows(run, n, category):
            taking = {s.id for s in window}
            stranded = len(stranded_by(seats, available, taking))
            if stranded <= 1:
                single.append(Placement(tuple(s.id for s in window), stranded, _distance(window, focal),
                                        1 if stranded == 0 else 2))
    if single:
        return min(single, key=lambda p: _key(p, by_id))
    return _split(seats, available, all_runs, n, category, focal, by_id, max_rows)


def _split(seats, available, all_runs, n, category, focal, by_id, max_rows) -> Placement | None:
    """Rule 3: parts of at least two side by side, in consecutive rows."""
    windows_by_row: dict[int, dict[int, list[list[SeatPlace]]]] = {}
    for run in all_runs:
        for size in range(2, min(n, len(run)) + 1):
            for window in _in_row_windows(run, size, category):
                windows_by_row.setdefault(run[0].y, {}).setdefault(size, []).append(window)
    best: Placement | None = None
    rows = sorted(windows_by_row)
    for first_row in rows:
        for parts in _compositions(n, max_rows):
            if len(parts) < 2:
                continue
            part_rows = [first_row + i for i in range(len(parts))]
            if any(size not in windows_by_row.get(row, {}) for row, size in zip(part_rows, parts, strict=True)):
                continue
            for chosen in _combine([windows_by_row[row][size] for row, size in zip(part_rows, parts, strict=True)]):
                flat = [s for window in chosen for s in window]
                taking = {s.id for s in flat}
                placement = Placement(tuple(s.id for s in flat), len(stranded_by(seats, available, taking)),
                                      _distance(flat, focal), 3)
                if best is None or _key(placement, by_id) < _key(best, by_id):
                    best = placement
    return best


def _compositions(n: int, max_parts: int) -> Iterable[tuple[int, ...]]:
    """Ordered ways to write ``n`` as parts of at least 2, at most ``max_parts`` of them."""
    def go(rest: int, parts: tuple[int, ...]):
        if rest == 0:
            yield parts
            return
        if len(parts) == max_parts:
            return
        for size in range(2, rest + 1):
            if rest - size == 1:
                continue
            yield from go(rest - size, parts + (size,))
    yield from go(n, ())


def _combine(options: list[list[list[SeatPlace]]]) -> Iterable[list[list[SeatPlace]]]:
    if not options:
        yield []
        return
    for first in options[0]:
        for rest in _combine(options[1:]):
            yield [first, *rest]
