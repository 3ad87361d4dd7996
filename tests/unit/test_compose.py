"""compose/ cannot run here (no Docker engine): check it against the supervisord stack instead."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())


def test_data_lives_in_volumes_and_start_order_waits_for_health():
    services = _compose()["services"]
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data"), ("rabbitmq", "/var/lib/rabbitmq")):
        assert any(v.endswith(":" + path) for v in services[name]["volumes"]), name
        assert "healthcheck" in services[name]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["app1"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2 and "COPY proxy/" in dockerfile and "USER " in dockerfile


def test_compose_has_the_services_of_the_stack():
    assert {"postgres", "redis", "rabbitmq", "migrate", "app1", "app2", "app3", "proxy"} <= set(
        _compose()["services"])


def test_every_supervised_process_is_a_compose_service():
    supervisord = (ROOT / "scripts" / "supervisord.conf").read_text()
    programs = set(re.findall(r"^\[program:([\w-]+)\]", supervisord, re.M))
    instances = int(re.search(r"^numprocs=(\d+)", supervisord, re.M).group(1))
    programs = (programs - {"app"}) | {f"app{i}" for i in range(1, instances + 1)}
    assert programs and programs <= set(_compose()["services"]), programs


def test_the_proxy_listens_on_the_same_public_port_as_make_up():
    import tomllib

    port = tomllib.loads((ROOT / "scripts" / "proxy.toml").read_text())["port"]
    settings = tomllib.loads((ROOT / "scripts" / "proxy.toml").read_text())
    proxy = _compose()["services"]["proxy"]
    assert f"127.0.0.1:{port}:8000" in proxy["ports"]
    assert f"127.0.0.1:{settings['admin_port']}:8090" in proxy["ports"]
    # as many app instances behind it as make up runs, each waited for until healthy
    supervisord = (ROOT / "scripts" / "supervisord.conf").read_text()
    instances = int(re.search(r"^numprocs=(\d+)", supervisord, re.M).group(1))
    backends = proxy["environment"]["PROXY_BACKENDS"].split(",")
    assert len(backends) == instances == len(settings["backends"])
    assert {b.split(":")[0] for b in backends} == {f"app{i}" for i in range(1, instances + 1)}
    assert all(proxy["depends_on"][f"app{i}"]["condition"] == "service_healthy" for i in range(1, instances + 1))


def test_no_secret_is_written_in_the_compose_file():
    env = _compose()["x-app-env"]
    assert env["JWT_SECRET_KEY"].startswith("${JWT_SECRET_KEY:?")
    assert env["ADMIN_PASSWORD"].startswith("${")
    assert env["TICKET_SIGNING_KEY"].startswith("${TICKET_SIGNING_KEY:?")
    assert env["TICKET_KEYS_ENCRYPTION_KEY"].startswith("${TICKET_KEYS_ENCRYPTION_KEY:?")
    assert env["MFA_ENCRYPTION_KEY"].startswith("${MFA_ENCRYPTION_KEY:?")


def test_every_setting_compose_passes_is_one_the_app_reads():
    config = (ROOT / "app" / "config.py").read_text()
    for name in _compose()["x-app-env"]:
        assert f'"{name}"' in config, name


def test_the_tests_pin_every_setting_the_generated_env_file_carries():
    """A test process loads no setting from the stack's .env (the suite's gunicorn reads it)."""
    import re as _re

    from tests.conftest import TEST_ENV

    generated = (ROOT / "scripts" / "setup.sh").read_text()
    body = generated[generated.index("cat > .env <<ENV"):generated.index("\nENV\n")]
    names = set(_re.findall(r"^([A-Z_]+)=", body, _re.M))
    assert names and names <= set(TEST_ENV), names - set(TEST_ENV)


def test_the_migrate_service_runs_the_same_alembic_setup_as_make():
    """Migrations run through plain Alembic (no Flask) in Compose as in scripts/ensure_database.py."""
    command = " ".join(_compose()["services"]["migrate"]["command"])
    assert "alembic -c migrations/alembic.ini upgrade head" in command
    assert '"migrations" / "alembic.ini"' in (ROOT / "scripts" / "ensure_database.py").read_text()
    assert (ROOT / "migrations" / "alembic.ini").exists()
