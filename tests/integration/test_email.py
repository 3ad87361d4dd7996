"""Emails through the queue to a real SMTP server: each due once, and "confirmed"
only for a charge that succeeded."""
from zoneinfo import ZoneInfo

from sqlalchemy import text, update

from app import db
from app.models import OutboxEvent
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, status_of, work_until


def _pay(api, app, user, show, broker, token):
    seat = seat_ids(api, show["showtime"])[0]
    res = reserve(api, user, hold(api, user, show["showtime"], [seat]).json["id"], token).json
    relay(app, broker)  # the charge
    work_until(app, lambda c: status_of(app, res["id"]) != "pending_payment")
    relay(app, broker)  # the email the outcome asked for
    return res


def test_tok_visa_confirmation_email_carries_the_tickets(api, app, user, show, broker, smtp):
    res = _pay(api, app, user, show, broker, "tok_visa")
    work_until(app, lambda c: smtp.messages)
    (message,) = smtp.messages
    assert message["To"] == "user@test.example" and message["Subject"] == "Your tickets for Heat"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    code = api.get(f"/api/v1/reservations/{res['id']}/tickets", user).json[0]["code"]
    assert "confirmed" in text and code in text and code in html


def test_the_confirmation_says_who_what_where_when_and_how_much(api, app, user, show, broker, smtp):
    """Every fact of the confirmation, each from its own table (the context is one SQL
    statement read as rows: an attribute missing there would render as nothing)."""
    res = _pay(api, app, user, show, broker, "tok_visa")
    work_until(app, lambda c: smtp.messages)
    (message,) = smtp.messages
    body = message.get_body(("plain",)).get_content()
    with app.app_context():
        facts = db.session.execute(text("""
            SELECT u.name, m.title, t.name AS theater, sc.name AS screen, s.starts_at, c.timezone
              FROM reservations r JOIN users u ON u.id = r.user_id JOIN showtimes s ON s.id = r.showtime_id
              JOIN movies m ON m.id = s.movie_id JOIN screens sc ON sc.id = s.screen_id
              JOIN theaters t ON t.id = sc.theater_id JOIN cities c ON c.id = t.city_id
             WHERE r.id = :id"""), {"id": res["id"]}).one()
    zone = ZoneInfo(facts.timezone)
    when = facts.starts_at.astimezone(zone).strftime("%A %d %B %Y, %H:%M") + f" ({zone.key})"
    assert body.startswith(f"Hello {facts.name},\n")
    assert (f"Your booking is confirmed: {facts.title}, {when} at {facts.theater} ({facts.screen}).\n"
            f"Paid: {res['total_cents'] / 100:.2f} {res['currency']}.") in body
    (ticket,) = api.get(f"/api/v1/reservations/{res['id']}/tickets", user).json
    assert f"  {ticket['seat_label']}: {ticket['code']}\n    QR code: http" in body
    assert f"they are in your reservation {res['id']}." in body


def test_tok_declined_says_so_and_never_confirmed(api, app, user, show, broker, smtp):
    _pay(api, app, user, show, broker, "tok_declined")
    work_until(app, lambda c: smtp.messages)
    assert smtp.subjects() == ["Payment declined for Heat"]
    assert "confirmed" not in smtp.messages[0].get_body(("plain",)).get_content()


def test_tok_error_confirms_after_retries_with_one_email(api, app, user, show, broker, smtp):
    _pay(api, app, user, show, broker, "tok_error")
    work_until(app, lambda c: smtp.messages)
    assert smtp.subjects() == ["Your tickets for Heat"]


def test_a_redelivered_notice_sends_one_email(api, app, user, show, broker, smtp):
    _pay(api, app, user, show, broker, "tok_visa")
    with app.app_context():  # the relay publishes the email request twice
        db.session.execute(update(OutboxEvent).where(OutboxEvent.topic == "notifications.email")
                           .values(published_at=None))
        db.session.commit()
    relay(app, broker)
    work_until(app, lambda c: c.handled >= 2)
    assert len(smtp.messages) == 1


def test_cancellation_email_mentions_the_refund(api, app, user, show, broker, smtp):
    res = _pay(api, app, user, show, broker, "tok_visa")
    work_until(app, lambda c: smtp.messages)
    api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)
    relay(app, broker)
    work_until(app, lambda c: len(smtp.messages) == 2)
    assert smtp.subjects()[1] == "Reservation cancelled: Heat"
    assert "refund" in smtp.messages[1].get_body(("plain",)).get_content()


def test_a_message_in_other_scripts_arrives_whole(app, smtp):
    """Subject and bodies outside ASCII (a movie called Amélie, a theater in Kraków)
    reach a real SMTP server as sent, both parts, with the headers mail systems want."""
    mailer = app.extensions["marquee"].mailer
    try:
        mailer.send("user@test.example", "Your tickets for Amélie — 東京", "Kraków, Sala 1: Amélie\n",
                    "<p>Kraków, Sala 1: <b>Amélie</b></p>")
    finally:
        mailer.close()
    (message,) = smtp.messages
    assert message["Subject"] == "Your tickets for Amélie — 東京" and message["To"] == "user@test.example"
    assert message.get_body(("plain",)).get_content() == "Kraków, Sala 1: Amélie\n"
    assert message.get_body(("html",)).get_content().strip() == "<p>Kraków, Sala 1: <b>Amélie</b></p>"
    assert message["Date"] and message["Message-ID"] and message.get_content_type() == "multipart/alternative"
