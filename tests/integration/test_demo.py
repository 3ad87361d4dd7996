"""Demo seeding: idempotent, fresh showtimes, and it leaves admins' own screens alone."""
from sqlalchemy import func, select

from app import db
from app.models import Showtime, User
from app.services.demo import DEMO_PASSWORD


def test_seed_demo_is_idempotent_and_leaves_other_screens_alone(app, api, admin):
    ids = api.catalog(admin)  # an admin's own screen with one showtime
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo", "--customers", "5"])
    assert first.exit_code == 0, first.output
    with app.app_context():
        shows = db.session.scalar(select(func.count(Showtime.id)))
        assert db.session.scalar(select(func.count(Showtime.id)).where(Showtime.screen_id == ids["screen"])) == 1
    second = runner.invoke(args=["seed-demo", "--customers", "5"])
    assert "0 showtimes added, 0 customers added" in second.output
    with app.app_context():
        assert db.session.scalar(select(func.count(Showtime.id))) == shows
        assert db.session.scalar(select(func.count(User.id)).where(User.email.like("%@demo.marquee.test"))) == 5
    assert api.login("customer3@demo.marquee.test", DEMO_PASSWORD)["access_token"]
    names = [t["name"] for t in api.get("/api/v1/theaters").json]
    assert "Marquee Opéra" in names, names
    grand = [t for t in api.get("/api/v1/theaters").json if t["name"] == "Marquee Opéra"][0]
    screens = {s["name"]: s["seat_count"] for s in api.get(f"/api/v1/theaters/{grand['id']}/screens").json}
    assert screens == {"Grand": 320, "Studio": 96}
