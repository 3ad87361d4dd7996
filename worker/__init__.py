"""Background processes (not built yet): the pika consumers for payments, refunds,
reviews and notifications, and the APScheduler process that expires holds and
relays the outbox. They will call the same services in ``app.services`` as the
API. See the booking-engine and payments issues."""
