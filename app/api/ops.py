"""Liveness, readiness, metrics and the offline assets of the /docs page."""
from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from swagger_ui_bundle import swagger_ui_path

from app.api.problems import problem
from app.bootstrap import marquee
from app.ops_metrics import OpsCollector
from app.services.health import unavailable_dependencies

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    """200 while the process runs."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    """200 only while PostgreSQL and Redis answer; 503 naming what failed."""
    failed = unavailable_dependencies()
    if failed:
        return problem(
            503, code="not_ready", detail=f"Not ready: {', '.join(failed)} did not answer", failed=failed
        )
    return jsonify(status="ready", checks={"postgresql": "ok", "redis": "ok"})


@bp.get("/metrics")
def metrics():
    """Prometheus metrics: this instance's requests (aggregated over its gunicorn workers),
    and the on-sale view of the whole system (``app.ops_metrics``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    ops = current_app.extensions.get("ops_registry")
    if ops is None:
        ops = CollectorRegistry()
        ops.register(OpsCollector(marquee()))
        current_app.extensions["ops_registry"] = ops
    return Response(generate_latest(registry) + generate_latest(ops), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str):
    """Swagger UI's files, served from the installed package: /docs works offline."""
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)
