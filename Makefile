# Marquee: two commands set everything up on a fresh machine.
#   make up     start the stack in the background (and seed demo data); prints its URLs
#   make test   run every test
#   make down   stop the stack
# All targets are idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv/bin
SUPERVISOR_CONF := scripts/supervisord.conf
CTL := $(VENV)/supervisorctl -c $(SUPERVISOR_CONF)
PORT := 8000
ADMIN_PORT := 8090

.PHONY: help up down test lint status logs

help:
	@echo "make up      start the stack (proxy on http://127.0.0.1:$(PORT)) with demo data"
	@echo "make test    run the whole test suite (with make lint: ruff and the layer contracts)"
	@echo "make down    stop the stack"
	@echo "make status  show the stack's processes"
	@echo "make logs    follow the stack's logs"

# Traces: `make up TRACING=on` (from a stopped stack: a running one keeps its setting) writes
# JSON lines to var/traces/; OTEL_* variables (an OTLP endpoint, sampling) pass through too.
up:
	@scripts/setup.sh marquee
	@set -a; source .env; set +a; \
	  $(VENV)/flask --app wsgi bootstrap-admin && \
	  $(VENV)/flask --app wsgi seed-demo
	@if [ -S var/run/supervisor.sock ] && $(CTL) pid >/dev/null 2>&1; then \
	  echo "[up] stack already running: restarting it on the current code"; \
	  $(CTL) update >/dev/null; $(CTL) restart all >/dev/null; \
	else \
	  TRACING="$${TRACING:-off}" $(VENV)/supervisord -c $(SUPERVISOR_CONF); \
	fi
	@scripts/wait_ready.sh http://127.0.0.1:$(PORT)/ready 60
	@set -a; source .env; set +a; \
	  echo ""; \
	  echo "Marquee is up:"; \
	  echo "  API      http://127.0.0.1:$(PORT)/api/v1"; \
	  echo "  Docs     http://127.0.0.1:$(PORT)/docs   (spec: /openapi.json)"; \
	  echo "  GraphQL  http://127.0.0.1:$(PORT)/graphql   (GraphiQL in a browser)"; \
	  echo "  Health   http://127.0.0.1:$(PORT)/health  /ready  /metrics"; \
	  echo "  Live     seat-map events: http://127.0.0.1:$(PORT)/api/v1/showtimes/<id>/seats/events"; \
	  echo "           (the live process on 127.0.0.1:8004, /health /metrics)"; \
	  echo "  Proxy    three app instances (127.0.0.1:8001-8003) behind 127.0.0.1:$(PORT);"; \
	  echo "           its status, metrics, reload, drain: http://127.0.0.1:$(ADMIN_PORT)/status"; \
	  echo "  Admin    $$ADMIN_EMAIL / $$ADMIN_PASSWORD   (from .env)"; \
	  echo "  Demo     customer1@demo.marquee.test ... customer1000@demo.marquee.test / marquee-demo"; \
	  echo "  Mail     var/mail/  (every email sent, from the SMTP sink on 127.0.0.1:8025)"; \
	  echo "  SMS/push var/sms/  var/push/  (every reminder sent, from the development sinks)"; \
	  echo "  Logs     var/log/   (make logs)     Stop: make down"

# supervisorctl's shutdown returns once supervisord has begun stopping; `down` returns when it
# has ended (its processes are given up to stopwaitsecs, 35 s at most), so `make up` may follow.
down:
	@if [ -S var/run/supervisor.sock ] && pid=$$($(CTL) pid 2>/dev/null) && [ -n "$$pid" ]; then \
	  $(CTL) shutdown >/dev/null; \
	  for _ in $$(seq 600); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	  if kill -0 $$pid 2>/dev/null; then echo "[down] supervisord $$pid still stopping after 60 s" >&2; exit 1; fi; \
	  echo "[down] stack stopped"; \
	else echo "[down] stack is not running"; fi

status:
	@$(CTL) status || true
	@$(VENV)/python scripts/proxy_status.py http://127.0.0.1:$(ADMIN_PORT) || true

logs:
	@tail -n 50 -F var/log/*.log

test: lint
	@scripts/setup.sh marquee_test
	@$(VENV)/python -m pytest $(PYTEST_ARGS)

# The layers (import-linter contracts in pyproject.toml) and ruff; part of `make test`.
lint:
	@scripts/setup.sh
	@$(VENV)/ruff check .
	@$(VENV)/lint-imports --no-cache
