"""The live process: server-sent events of each showtime's seat changes (``python -m live``)."""
