"""Adapters to the outside world, each behind a small class: PostgreSQL is ``app.db``;
here are Redis (keys, seat holds in Lua, cache, idempotency records), RabbitMQ, SMTP,
the payment gateway, email templates, password hashing and session tokens."""
