"""SMS and push providers: the interfaces, and the development sinks built in.

A real provider fits behind ``SmsSender`` or ``PushSender``, as one does behind
the payment gateway's interface. Each call carries an idempotency key (the
reminder's), which a provider that deduplicates can use.

The sinks (``SMS_PROVIDER=sink``, ``PUSH_PROVIDER=sink``) keep every message as a
JSON file under ``SMS_SINK_DIR`` (``var/sms``) and ``PUSH_SINK_DIR``
(``var/push``), as the SMTP sink keeps emails under ``var/mail``, so a newcomer
sees what was sent. A file appears whole (written aside, then renamed).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Protocol


class SmsSender(Protocol):
    def send_sms(self, *, to: str, text: str, idempotency_key: str) -> None: ...


class PushSender(Protocol):
    def send_push(self, *, user_id: int, title: str, body: str, idempotency_key: str) -> None: ...


class JsonSink:
    """Keeps each message as ``<time>-<key>.json`` in a folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def keep(self, idempotency_key: str, message: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        safe_key = "".join(c if c.isalnum() or c in "-_" else "_" for c in idempotency_key)[:80]
        path = self.folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000_000:09d}-{safe_key}.json"
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps({"idempotency_key": idempotency_key, **message}, ensure_ascii=False, indent=2))
        os.replace(partial, path)
        return path

    def messages(self) -> list[dict]:
        """Every message kept, oldest first."""
        return [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))]


class SmsSink(JsonSink):
    def send_sms(self, *, to: str, text: str, idempotency_key: str) -> None:
        self.keep(idempotency_key, {"to": to, "text": text})


class PushSink(JsonSink):
    def send_push(self, *, user_id: int, title: str, body: str, idempotency_key: str) -> None:
        self.keep(idempotency_key, {"user_id": user_id, "title": title, "body": body})


def sms_sender(provider: str, sink_dir: str) -> SmsSender:
    """The SMS provider named by ``SMS_PROVIDER``."""
    if provider == "sink":
        return SmsSink(sink_dir)
    raise ValueError(f"SMS_PROVIDER: unknown provider {provider!r} (known: sink)")


def push_sender(provider: str, sink_dir: str) -> PushSender:
    """The push provider named by ``PUSH_PROVIDER``."""
    if provider == "sink":
        return PushSink(sink_dir)
    raise ValueError(f"PUSH_PROVIDER: unknown provider {provider!r} (known: sink)")
