"""SQLAlchemy models: the shape of the truth kept in PostgreSQL."""
from app.models.booking import Email, OutboxEvent, Payment, Reservation, ReservationSeat, Review, Ticket, WaitlistEntry, WebhookEvent
from app.models.catalog import City, Movie, Screen, Seat, Showtime, Theater
from app.models.user import User

__all__ = ["Email", "OutboxEvent", "Payment", "Review", "Ticket", "WaitlistEntry", "WebhookEvent", "Reservation", "ReservationSeat", "City", "Movie", "Screen", "Seat", "Showtime", "Theater", "User"]
