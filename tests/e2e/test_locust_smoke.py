"""The Locust scenarios do not rot: a short headless run of the browse and rush users
against a real gunicorn with demo data, no failures, and the audit's seat checks hold."""
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
