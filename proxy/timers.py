"""A deadline that moves for the price of an attribute.

Every request on a keep-alive connection moves its deadlines (the head timeout, the
backend's read timeout, the idle timeout) and most of them never pass. A loop timer
created and cancelled for each move cost more CPU than a tenth of what proxying a small
request costs; a ``Deadline`` keeps one timer and leaves it where it is when the deadline
moves later: the timer fires early, finds the deadline further on, and re-arms once.
It is re-armed at once only when a deadline comes sooner than the timer.
"""
from __future__ import annotations


class Deadline:
    __slots__ = ("loop", "callback", "when", "_handle", "_handle_when")

    def __init__(self, loop, callback) -> None:
        self.loop = loop
        self.callback = callback  # called once the deadline has passed
        self.when = 0.0  # loop time; 0: none
        self._handle = None
        self._handle_when = 0.0

    def set(self, when: float) -> None:
        self.when = when
        if self._handle is None or when < self._handle_when:
            self._arm(when)

    def clear(self) -> None:
        """No deadline: a timer armed for an earlier one fires and does nothing."""
        self.when = 0.0

    def cancel(self) -> None:
        """No deadline, and the timer goes too (a closed connection keeps nothing alive)."""
        self.when = 0.0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_when = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        when = self.when
        if not when:
            return
        if self.loop.time() < when:  # moved on since the timer was armed
            self._arm(when)
            return
        self.when = 0.0
        self.callback()
