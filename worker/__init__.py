"""Background processes. ``python -m worker.scheduler`` expires unpaid
reservations and sweeps stray seat keys (APScheduler). The pika consumers for
payments, refunds, reviews and notifications join with the payments issue; all
of them call the same services in ``app.services`` as the API."""
