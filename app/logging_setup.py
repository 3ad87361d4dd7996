"""Structured JSON logs carrying the request id of the request in hand."""
from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from app.adapters.tracing import ids as trace_ids

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# How to find the client's address of the request in hand (resolved only when asked:
# the audit log's entries carry it).
client_address_var: ContextVar[Callable[[], str] | None] = ContextVar("client_address", default=None)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def accept_or_create_request_id(incoming: str | None) -> str:
    """Keep a caller's (or the proxy's) id if it is sane, else make one."""
    if incoming and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        span = trace_ids()
        if span is not None:  # logs and traces join on these (app.adapters.tracing)
            record.trace_id, record.span_id = span
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON object per line (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_marquee", False) for h in root.handlers):
        root.setLevel(level)
        return
    # The format names no source line or thread: the logging HOWTO's "Optimization" says
    # how not to compute them for every record (findCaller walks the stack: a tenth of the
    # access log's cost on a hot request). The process id stays (a getpid): these switches
    # are the whole interpreter's, and gunicorn's own log lines say "[%(process)d]" (its
    # "Worker exiting" line failed to format without it).
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler._marquee = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        JsonFormatter(
            "%(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="ts",  # ISO 8601, UTC
        )
    )
    root.addHandler(handler)
    root.setLevel(level)


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>``: one log record (``thread stacks``, level WARNING) with every
    thread's stack, and the process goes on: where a worker, a scheduler or the live process
    is stuck, read without stopping it. A Python handler, run by the main thread between two
    of its steps, where stacks are read under the interpreter's locks (``faulthandler``'s C
    handler reads them while the threads run: it crashed a starting worker 4 times in 30).
    Not for gunicorn's workers: SIGUSR1 is gunicorn's signal to reopen its logs."""
    signal.signal(signal.SIGUSR1, _log_thread_stacks)


def _log_thread_stacks(_signum, _frame) -> None:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    threads = [{"thread": names.get(ident, str(ident)), "stack": traceback.format_stack(frame)}
               for ident, frame in sys._current_frames().items()]
    logging.getLogger("marquee.stacks").warning("thread stacks", extra={"threads": threads})
