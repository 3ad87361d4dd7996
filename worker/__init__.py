"""Background processes over the same services as the API, booted by
``app.bootstrap`` (never the web app):

- ``python -m worker.consumer``: RabbitMQ consumers (pika) for payments,
  refunds, reviews and email;
- ``python -m worker.scheduler``: APScheduler jobs (expiry, Redis
  reconciliation, waitlist offers, waiting-room admission, reminders, the
  outbox's purge) and the outbox relay;
- ``python -m worker.smtp_sink``: a real SMTP server on loopback for development.
"""
