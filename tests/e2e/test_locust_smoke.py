"""The Locust scenarios do not rot: short headless runs of the browse and rush users, and
of the on-sale's customers, against a real gunicorn with demo data: no failures, and the
audit's seat checks hold."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import requests

from loadtests.audit import check_double_sold, check_stuck_holds

ROOT = Path(__file__).resolve().parents[2]


def test_browse_and_rush_users_run_clean(app, live_server, tmp_path):
    from sqlalchemy import text

    from app import db
    from app.bootstrap import marquee
    from app.services.demo import seed

    with app.app_context():
        seed(customers=8)
        showtime = db.session.execute(text(
            "SELECT st.id FROM showtimes st JOIN seats s ON s.screen_id = st.screen_id "
            "WHERE st.starts_at > now() + interval '2 hours' GROUP BY st.id HAVING count(*) >= 300 "
            "ORDER BY min(st.starts_at) LIMIT 1")).scalar_one()
    tokens = [requests.post(live_server + "/api/v1/auth/login", timeout=30, json={
        "email": f"customer{n}@demo.marquee.test", "password": "marquee-demo"}).json()["access_token"]
        for n in range(1, 9)]
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    # straight to gunicorn, with no live process: the rush customers poll the seat map
    env = {**os.environ, "MARQUEE_SHOWTIME": str(showtime), "MARQUEE_TOKENS": str(tmp_path / "tokens.json"),
           "MARQUEE_MAP": "poll"}
    subprocess.run([str(ROOT / ".venv" / "bin" / "locust"), "-f", str(ROOT / "loadtests" / "locustfile.py"),
                    "--headless", "-u", "8", "-r", "8", "-t", "8s", "--host", live_server, "--only-summary",
                    "--csv", str(tmp_path / "smoke"), "Browser", "RushCustomer"],
                   cwd=ROOT, env=env, check=False, capture_output=True, timeout=120)
    stats = {row["Name"]: row for row in csv.DictReader(open(tmp_path / "smoke_stats.csv"))}
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]
    assert int(stats["/showtimes/[id]/seats"]["Request Count"]) > 0
    assert sum(int(row["Request Count"]) for name, row in stats.items() if name.startswith("/showtimes/[id]/holds")) > 0
    assert int(stats["/movies"]["Request Count"]) > 0
    with app.app_context():
        assert check_double_sold(db.session, showtime).ok
        assert check_stuck_holds(db.session, marquee(), showtime).ok



def test_onsale_customers_run_clean(app, live_server, background, tmp_path):
    """Eight on-sale customers, four joining in the seconds before the opening and four in
    the seconds after, straight to gunicorn (no live process: the status and the seat map
    are polled), the real scheduler admitting and the real worker charging: no request
    fails, every customer is admitted and ends (most buy), admissions follow the numbers,
    the early ones' numbers are the first four, holds are made with the admission token,
    and the audit's seat checks hold."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    from app import db
    from app.bootstrap import marquee
    from app.services import waiting_room
    from app.services.demo import seed
    from loadtests.onsale import analyse

    with app.app_context():
        seed(customers=8)
        showtime = db.session.execute(text(
            "SELECT st.id FROM showtimes st JOIN seats s ON s.screen_id = st.screen_id "
            "WHERE st.starts_at > now() + interval '2 hours' "
            "AND NOT EXISTS (SELECT 1 FROM waiting_rooms w WHERE w.showtime_id = st.id) "
            "GROUP BY st.id HAVING count(*) >= 300 ORDER BY min(st.starts_at) LIMIT 1")).scalar_one()
        opens_at = (datetime.now(timezone.utc) + timedelta(seconds=8)).replace(microsecond=0)
        waiting_room.configure(showtime, opens_at, admit_per_minute=6000, max_active=50, session_seconds=60,
                               actor=None)
    tokens = [requests.post(live_server + "/api/v1/auth/login", timeout=30, json={
        "email": f"customer{n}@demo.marquee.test", "password": "marquee-demo"}).json()["access_token"]
        for n in range(1, 9)]
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    env = {**os.environ, "MARQUEE_SHOWTIME": str(showtime), "MARQUEE_TOKENS": str(tmp_path / "tokens.json"),
           "MARQUEE_OPENS_AT": str(opens_at.timestamp()), "MARQUEE_EARLY": "4", "MARQUEE_ARRIVALS": "3",
           "MARQUEE_NUMBER_SPREAD": "1", "MARQUEE_ONSALE_LOG": str(tmp_path / "journeys.json")}
    subprocess.run([str(ROOT / ".venv" / "bin" / "locust"), "-f", str(ROOT / "loadtests" / "locustfile.py"),
                    "--headless", "-u", "8", "-r", "8", "-t", "60s", "--host", live_server, "--only-summary",
                    "--csv", str(tmp_path / "onsale"), "OnsaleCustomer"],
                   cwd=ROOT, env=env, check=False, capture_output=True, timeout=120)
    stats = {row["Name"]: row for row in csv.DictReader(open(tmp_path / "onsale_stats.csv"))}
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]
    journeys = json.loads((tmp_path / "journeys.json").read_text())
    customers = journeys["customers"]
    assert len(customers) == 8 and all(c["outcome"] for c in customers), customers
    assert sorted(c["number"] for c in customers if c["join_status"] == "pre_queue") == list(range(1, 5)), customers
    figures = analyse(journeys, opens_at.timestamp(), 60)
    assert figures["admitted"] == 8 and figures["out_of_order"] == 0, figures
    assert dict(figures["outcomes"]).get("bought", 0) >= 4 and figures["held"] >= 4, figures
    assert not [h for c in customers for h in c["holds"] if h[1].startswith("403")], customers
    with app.app_context():
        assert check_double_sold(db.session, showtime).ok
        assert check_stuck_holds(db.session, marquee(), showtime).ok
