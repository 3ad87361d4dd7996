"""Gunicorn settings for an app instance (``gunicorn -c gunicorn.conf.py wsgi:app``)."""
import os
import shutil

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))  # holds wait on Redis: threads pay
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app writes JSON access logs itself, with the request id
errorlog = "-"
loglevel = "info"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket (gunicornc) defaults to one path per user ($HOME/.gunicorn/
# gunicorn.ctl): the stack's three instances and the tests' servers would each take it
# from the one before. Off unless GUNICORN_CONTROL_SOCKET names a path of this instance's own.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True

# Request limits, agreed with the proxy in front (proxy/config.py, "Limits"): whatever the
# proxy forwards, gunicorn accepts, so the proxy is the layer that refuses, with a problem
# document; gunicorn's own refusals are HTML pages. These stay a backstop for anything
# that reaches gunicorn without the proxy. Raise one of the proxy's, raise its partner here.
#   limit_request_line: the whole line, "<method> <target> HTTP/1.1", CRLF excluded. The
#     proxy takes targets up to max_request_line = 8000 bytes: with the longest method it
#     parses (UNSUBSCRIBE) that is 8021 bytes. 8190 is the most gunicorn allows (more is
#     cut to 8190; 0 would mean no limit).
#   limit_request_fields: the proxy takes max_headers = 100 fields and adds up to 4
#     (X-Forwarded-For, X-Forwarded-Proto, X-Request-ID, Via): 104, rounded up to 110.
#   limit_request_field_size: one "name: value" line with its CRLF. The proxy takes
#     max_header_bytes = 32 KiB of fields in all (each counted as name + value + 4, the same
#     bytes), and X-Forwarded-For and Via grow by the hop it appends (", <client address>",
#     ", 1.1 marquee"): 32 KiB + 1 KiB. (0 here would not mean unlimited: gunicorn takes
#     it as its default, 8190.)
limit_request_line = int(os.environ.get("LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("LIMIT_REQUEST_FIELDS", "110"))
limit_request_field_size = int(os.environ.get("LIMIT_REQUEST_FIELD_SIZE", str(33 * 1024)))


def on_starting(server):
    """Prometheus multiprocess mode: start every run with an empty metrics folder."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """Export the spans this worker still holds (app.adapters.tracing; nothing when off)."""
    from app.adapters import tracing

    tracing.shutdown()
