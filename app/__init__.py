"""Marquee: a movie-ticket booking backend.

- ``app.bootstrap`` builds a process's dependencies, without Flask;
- ``app.services`` hold the rules (and know no HTTP), over ``app.models`` and
  ``app.adapters`` (Redis, RabbitMQ, SMTP, the payment gateway);
- ``app.web`` is the Flask application (``create_app``) and ``app.api`` its
  blueprints and schemas;
- ``worker`` (outside this package) runs the consumers and the scheduler over
  the same services.
"""
