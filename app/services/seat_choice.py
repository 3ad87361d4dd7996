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
3. split over neighbouring rows (at most three), each part at least two seats side by
   side: each part is the best window of its size in its row (fewest stranded seats, then
   nearest the focal point, then the smaller x), and among the ways to split the party
   over consecutive rows the one stranding fewest seats, then nearest, wins.

Accessible parties (``accessible = k``, ``1 <= k <= n``): a *window* is ``n`` seats side
by side in one run of one row, and it fits the party (``accessible_window_ok``) when
exactly ``k`` of its seats are wheelchair spaces, every companion seat of it is beside
(``x - 1`` or ``x + 1``) a wheelchair space of the same window, and every other seat is
of ``category`` when one is given (companion seats beside a space always fit). Only
rules 1 and 2 apply: the rest of the party sits beside the spaces, which a split over
rows would not give, so an accessible party is never split (no window: no placement).
Stranding, distance and tie-break are those of every other party. With ``accessible =
0`` wheelchair and companion seats are seats like any other here: the caller keeps them
out through ``category`` (or its own eligibility) while they are reserved.

Distance and tie-break (deterministic): a placement's centre is the mean ``x`` and mean
``y`` of its seats; its distance is the Euclidean distance from that centre to the focal
point, taken to the nearest sixth of a seat (so that it is computed exactly, in integers,
by this model and by the atomic step alike). Among the placements of the winning rule the
least by this key wins: (seats stranded, distance, smaller ``y`` (nearer the screen),
smaller first ``x``, then the seat ids in order, which only a split can need).
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


SIXTHS = 6  # the focal point's resolution: a sixth of a seat


def sixths(focal: tuple[float, float]) -> tuple[int, int]:
    """The focal point in sixths of a seat (what the atomic step is given)."""
    return round(focal[0] * SIXTHS), round(focal[1] * SIXTHS)


def _spread(chosen: Sequence[SeatPlace], focal6: tuple[int, int]) -> int:
    """(36 n^2) times the squared distance from the centre to the focal point: an exact
    integer, so that equal distances compare equal everywhere."""
    n = len(chosen)
    dx = SIXTHS * sum(s.x for s in chosen) - n * focal6[0]
    dy = SIXTHS * sum(s.y for s in chosen) - n * focal6[1]
    return dx * dx + dy * dy


def _distance(chosen: Sequence[SeatPlace], focal6: tuple[int, int]) -> float:
    return math.sqrt(_spread(chosen, focal6)) / (SIXTHS * len(chosen))


def _key(p: Placement, by_id: dict[int, SeatPlace], focal6: tuple[int, int]) -> tuple:
    chosen = [by_id[i] for i in p.seat_ids]
    return (p.stranded, _spread(chosen, focal6), min(s.y for s in chosen), chosen[0].x, p.seat_ids)


WHEELCHAIR, COMPANION = "wheelchair", "companion"


def accessible_window_ok(window: Sequence[SeatPlace], k: int, category: str | None = None) -> bool:
    """Whether ``window`` (seats side by side in one row) fits a party with ``k``
    wheelchair spaces: exactly ``k`` spaces, each companion seat beside a space of the
    window, each other seat of ``category`` if one is given. Written once, here: the
    atomic step (``hold_best.lua``) mirrors it."""
    spaces = {s.x for s in window if s.category == WHEELCHAIR}
    if len(spaces) != k:
        return False
    for seat in window:
        if seat.category == COMPANION:
            if seat.x - 1 not in spaces and seat.x + 1 not in spaces:
                return False
        elif seat.category != WHEELCHAIR and category is not None and seat.category != category:
            return False
    return True


def _fits(window: Sequence[SeatPlace], category: str | None, accessible: int) -> bool:
    if accessible:
        return accessible_window_ok(window, accessible, category)
    return category is None or all(s.category == category for s in window)


def _in_row_windows(run: list[SeatPlace], n: int, category: str | None, accessible: int = 0) -> Iterable[list[SeatPlace]]:
    for start in range(len(run) - n + 1):
        window = run[start:start + n]
        if _fits(window, category, accessible):
            yield window


def best_available(seats: Sequence[SeatPlace], available: set[int], n: int, *,
                   category: str | None = None, focal: tuple[float, float] | None = None,
                   max_rows: int = 3, accessible: int = 0) -> Placement | None:
    """The placement the rules choose for a party of ``n``, or None (not enough seats).

    ``max_rows`` bounds how many neighbouring rows a split may use (rule 3).
    ``accessible``: how many of the ``n`` need a wheelchair space; such a party gets
    one window of rule 1 or 2 (``accessible_window_ok``) and is never split."""
    if n < 1:
        return None
    focal6 = sixths(focal or default_focal_point(seats))
    by_id = {s.id: s for s in seats}
    all_runs = runs(seats, available)
    single: list[Placement] = []
    for run in all_runs:
        for window in _in_row_windows(run, n, category, accessible):
            taking = {s.id for s in window}
            stranded = len(stranded_by(seats, available, taking))
            if stranded <= 1:
                single.append(Placement(tuple(s.id for s in window), stranded, _distance(window, focal6),
                                        1 if stranded == 0 else 2))
    if single:
        return min(single, key=lambda p: _key(p, by_id, focal6))
    if accessible:
        return None
    return _split(seats, available, all_runs, n, category, focal6, by_id, max_rows)


def _split(seats, available, all_runs, n, category, focal6, by_id, max_rows) -> Placement | None:
    """Rule 3: parts of at least two side by side, in consecutive rows; each part the
    best window of its size in its row, so the search stays linear in the room's size."""
    best_window: dict[tuple[int, int], tuple[tuple, list[SeatPlace]]] = {}  # (row, size) -> (key, window)
    for run in all_runs:
        for size in range(2, min(n, len(run)) + 1):
            for window in _in_row_windows(run, size, category):
                stranded = len(stranded_by(seats, available, {s.id for s in window}))
                key = (stranded, _spread(window, focal6), window[0].x)
                slot = (run[0].y, size)
                if slot not in best_window or key < best_window[slot][0]:
                    best_window[slot] = (key, window)
    best: Placement | None = None
    for first_row in sorted({row for row, _ in best_window}):
        for parts in _compositions(n, max_rows):
            if len(parts) < 2:
                continue
            slots = [(first_row + i, size) for i, size in enumerate(parts)]
            if any(slot not in best_window for slot in slots):
                continue
            flat = [s for slot in slots for s in best_window[slot][1]]
            placement = Placement(tuple(s.id for s in flat), len(stranded_by(seats, available, {s.id for s in flat})),
                                  _distance(flat, focal6), 3)
            if best is None or _key(placement, by_id, focal6) < _key(best, by_id, focal6):
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

