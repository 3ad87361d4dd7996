"""Attempts counted against a limit in a window (sign-ins, second-factor codes, voucher
codes, password resets), in Redis by ``count_failure.lua``.

An attempt is counted *before* it is checked, so a burst of parallel guesses cannot
slip past the limit, and un-counted when it succeeds: the count is of failures."""
from __future__ import annotations

from app.bootstrap import marquee
from app.services import errors


def count(key: str, window_seconds: int) -> tuple[int, int]:
    """One more attempt on ``key``: the count in the window and the seconds it has left."""
    attempts, ttl = marquee().count_failure(keys=[key], args=[window_seconds])
    return int(attempts), int(ttl)


def limit(key: str, window_seconds: int, most: int, message: str) -> None:
    """Count one attempt; 429 (``Retry-After``: the window's rest) past ``most``."""
    attempts, ttl = count(key, window_seconds)
    if attempts > most:
        raise errors.RateLimited(message, retry_after=ttl)


def uncount(key: str) -> None:
    """The attempt succeeded (or was refused unchecked): it does not count."""
    client = marquee().redis.client
    if client.decr(key) <= 0:
        client.delete(key)
