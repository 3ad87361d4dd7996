"""k8s/ cannot be applied here (no cluster): render it with kustomize (`kubectl kustomize`, or a
standalone `kustomize build`), validate every object against the Kubernetes schemas offline
(kubernetes-validate), and check it against the supervisord stack and Compose, as
test_compose.py checks Compose: the same processes and commands, ports, probes and
environment, so the three do not drift."""
from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from proxy.config import POOL_SETTINGS, ProxyConfig
from proxy.config import load as load_proxy_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# The oldest schemas kubernetes-validate carries, and its newest.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

# Supervised programs the cluster does not run, and why.
NOT_IN_THE_CLUSTER = {
    "smtp": "the development mail sink: in the cluster SMTP_HOST names a real relay (marquee-smtp)",
}
# Variables the stack sets for a process that the cluster deliberately does not set, and why.
# Empty today: every variable is set. One that drifts away must be added here with its reason.
ENV_NOT_IN_THE_CLUSTER: dict[str, dict[str, str]] = {}
# Tracing's variables (TRACING, TRACES_DIR, OTEL_*: the traces half of issue 18) are the
# operator's choice in a cluster (its collector's endpoint, its sampling): not compared.
TRACING_VARIABLES = re.compile(r"^(OTEL_\w+|TRACING|TRACES_DIR)$")
# Variables the cluster sets to another value than Compose does, and why (Compose's values
# with `${...}` come from its caller's environment and are not compared).
ENV_VALUES_DIFFER = {
    "PROXY_BACKENDS": "one Service (marquee-app) of the app's ready pods, not three named containers",
    "TRUSTED_PROXIES": "the cluster's pod addresses, not Docker's bridge networks",
    "SMTP_HOST": "a real mail relay (the marquee-smtp ExternalName), not the development sink",
    "SMTP_PORT": "the relay's submission port, not the sink's",
    "REDIS_URL": "the marquee-redis ExternalName, with its password",
    "AMQP_URL": "the marquee-rabbitmq ExternalName, with its own user",
}


# --- rendering --------------------------------------------------------------------------


def _renderer() -> list[str]:
    """kubectl's built-in kustomize, or a standalone kustomize. Neither: fail, never skip."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail("neither kubectl nor kustomize is on PATH: scripts/setup.sh installs Debian's "
                "kubernetes-client (kubectl 1.20+, kustomize v2.0.3+ built in), or install either")


def _render(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*_renderer(), str(directory)], capture_output=True, text=True, timeout=60)


def _objects(directory: Path) -> list[dict]:
    result = _render(directory)
    assert result.returncode == 0, (f"kustomize could not render {directory} (k8s/ needs kustomize v2.0.3 or "
                                    f"later: kubectl 1.20+):\n{result.stderr}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of k8s/ with the production overlay's secrets.env made from the example (the
    real one is on the deploying machine only)."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    return copy


@pytest.fixture(scope="module")
def base(checkout):
    return _objects(checkout / "base")


@pytest.fixture(scope="module")
def production(checkout):
    shutil.copy(checkout / "base" / "secrets.example.env", checkout / "overlays" / "production" / "secrets.env")
    return _objects(checkout / "overlays" / "production")


@pytest.fixture(scope="module", params=["base", "production"])
def rendered(request):
    return request.getfixturevalue(request.param)


def _one(objects, kind, name):
    """The object of this kind whose name is ``name`` (a generated one: with its hash suffix)."""
    found = [o for o in objects if o["kind"] == kind and re.fullmatch(
        re.escape(name) + r"(-[a-z0-9]{10})?", o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in objects if o["kind"] == kind])
    return found[0]


def _container(objects, name):
    kind = "Job" if name == "marquee-migrate" else "Deployment"
    return _one(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _data(objects, kind, name, *, exact=False) -> dict[str, str]:
    """A ConfigMap's or Secret's data (decoded). ``exact``: ``name`` is a reference as rendered,
    which must name an object exactly (kustomize rewrites references to generated names)."""
    if exact:
        found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind} {name}: referenced, not rendered"
        obj = found[0]
    else:
        obj = _one(objects, kind, name)
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return obj.get("data") or {}


def _cluster_env(objects, container) -> dict[str, str | None]:
    """Every variable the container gets: envFrom's ConfigMaps and Secrets, then env (which
    wins); a value from a secretKeyRef is None (the Secret and its key must exist)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        env.update(_data(objects, kind, ref["name"], exact=True))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
        if ref := item.get("valueFrom", {}).get("secretKeyRef"):
            assert ref["key"] in _data(objects, "Secret", ref["name"], exact=True), item["name"]
    return env


# --- the stack --------------------------------------------------------------------------


def _compose():
    return yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())


def _supervisord() -> dict[str, dict[str, str]]:
    """Each [program:x] section's settings."""
    programs: dict[str, dict[str, str]] = {}
    current = None
    for line in (ROOT / "scripts" / "supervisord.conf").read_text().splitlines():
        if m := re.match(r"^\[program:([\w-]+)\]", line):
            current = programs.setdefault(m.group(1), {})
        elif line.startswith("["):
            current = None
        elif current is not None and (m := re.match(r"^(\w+)=(.*)$", line)):
            current[m.group(1)] = m.group(2)
    return programs


def _supervisord_env(settings) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', settings.get("environment", "")))


def _dotenv_names() -> set[str]:
    """What the .env that scripts/setup.sh generates carries: every process that loads it."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    return set(re.findall(r"^([A-Z_]+)=", setup[setup.index("cat > .env <<ENV"):setup.index("\nENV\n")], re.M))


LOADS_DOTENV = {"app": "wsgi.py", "live": "live/server.py", "scheduler": "worker/scheduler.py",
                "worker": "worker/consumer.py"}

DOCKERFILE_CMD = re.search(r'^CMD (\[.*\])$', (ROOT / "compose" / "Dockerfile").read_text(), re.M)


def _compose_command(service) -> list[str]:
    command = _compose()["services"][service].get("command")
    if command is None:  # the image's
        command = yaml.safe_load(DOCKERFILE_CMD.group(1))
    return shlex.split(command) if isinstance(command, str) else command


def _normalized(command: list[str]) -> list[str]:
    """A command as run: no virtualenv path, the proxy's configuration file wherever it is."""
    command = [re.sub(r"^%\(here\)s/\.\./\.venv/bin/", "", part) for part in command]
    return ["<proxy.toml>" if part.endswith("/proxy.toml") else part for part in command]


def _compose_service(program: str) -> str:
    return "app1" if program == "app" else program


# --- the tests --------------------------------------------------------------------------


def test_both_render_and_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    kinds = {o["kind"] for o in rendered}
    assert {"Deployment", "Job", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    for version in KUBERNETES_VERSIONS:
        for obj in rendered:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {error.message} "
                            f"at {'.'.join(map(str, error.path))}")


def test_the_validation_refuses_what_a_cluster_would():
    """The schemas are strict: an unknown field or a wrong type is refused, so the test above can fail."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "x", "imagee": "marquee"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment["spec"]["template"]["spec"]["containers"] = [{"name": "x", "image": "marquee"}]
    deployment["spec"]["replicas"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_supervised_process_runs_in_the_cluster_with_the_same_command(rendered):
    programs = _supervisord()
    assert set(NOT_IN_THE_CLUSTER) <= set(programs)
    for program, settings in programs.items():
        if program in NOT_IN_THE_CLUSTER:
            assert not [o for o in rendered if o["metadata"]["name"] == f"marquee-{program}" and o["kind"] == "Deployment"]
            continue
        container = _container(rendered, f"marquee-{program}")
        command = container.get("command", []) + container.get("args", [])
        assert _normalized(command) == _normalized(_compose_command(_compose_service(program))), program
        assert _normalized(command) == _normalized(shlex.split(settings["command"])), program
    # the migrations: Compose's migrate service's, which run what scripts/ensure_database.py does
    migrate = _container(rendered, "marquee-migrate")
    assert migrate["command"] == _compose_command("migrate")
    assert "alembic -c migrations/alembic.ini upgrade head" in " ".join(migrate["command"])


def test_every_container_runs_the_image_compose_builds(base, production):
    """One image, `marquee` (compose/Dockerfile); the production overlay names its registry and tag."""
    for objects, image in ((base, "marquee:latest"), (production, "registry.example.com/marquee:1.0.0")):
        pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
        assert pods and {c["image"] for p in pods for c in p["containers"]} == {image}
    uid = re.search(r"useradd .*--uid (\d+)", (ROOT / "compose" / "Dockerfile").read_text()).group(1)
    for pod in [o["spec"]["template"]["spec"] for o in base if o["kind"] in ("Deployment", "Job")]:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == int(uid)


def test_the_app_runs_as_many_instances_as_make_up_with_readiness_on_ready(rendered):
    instances = int(_supervisord()["app"]["numprocs"])
    app = _one(rendered, "Deployment", "marquee-app")
    assert app["spec"]["replicas"] == instances == 3
    container = _container(rendered, "marquee-app")
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def _port(container, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def _service_port(objects, host: str, port: int) -> int:
    """The container port behind ``host:port``, a Service of ``objects``."""
    service = _one(objects, "Service", host)
    entry = next(p for p in service["spec"]["ports"] if p["port"] == port)
    pods = [o for o in objects if o["kind"] == "Deployment"
            and service["spec"]["selector"].items() <= o["spec"]["template"]["metadata"]["labels"].items()]
    assert len(pods) == 1, host
    return _port(pods[0]["spec"]["template"]["spec"]["containers"][0], entry["targetPort"])


def test_ports_agree_with_the_stack(rendered):
    compose = _compose()["services"]
    scripts_proxy = tomllib.loads((ROOT / "scripts" / "proxy.toml").read_text())
    # the app: where Compose's instances listen (gunicorn's BIND), the Service in front
    app = _container(rendered, "marquee-app")
    env = _cluster_env(rendered, app)
    assert compose["app1"]["expose"] == [env["BIND"].rsplit(":", 1)[1]] == [str(_port(app, "http"))]
    # the live process: LIVE_PORT in all three
    live = _container(rendered, "marquee-live")
    live_port = _supervisord_env(_supervisord()["live"])["LIVE_PORT"]
    assert _cluster_env(rendered, live)["LIVE_PORT"] == compose["live"]["environment"]["LIVE_PORT"] == live_port
    assert _port(live, "http") == int(live_port)
    # the proxy: make up's public and admin ports, Compose's PROXY_* variables
    proxy = _container(rendered, "marquee-proxy")
    proxy_env = _cluster_env(rendered, proxy)
    assert int(proxy_env["PROXY_PORT"]) == _port(proxy, "http") == scripts_proxy["port"]
    assert int(proxy_env["PROXY_ADMIN_PORT"]) == _port(proxy, "admin") == scripts_proxy["admin_port"]
    for name in ("PROXY_HOST", "PROXY_PORT", "PROXY_ADMIN_HOST", "PROXY_ADMIN_PORT"):
        assert proxy_env[name] == compose["proxy"]["environment"][name], name
    assert _service_port(rendered, "marquee-proxy", 80) == scripts_proxy["port"]
    assert _service_port(rendered, "marquee-proxy-admin", 8090) == scripts_proxy["admin_port"]


def test_the_proxy_routes_to_the_app_and_live_services_as_the_stack_does(rendered, tmp_path):
    """The cluster's proxy.toml loads as the proxy loads it; its pools reach the Services in
    front of the app and the live process, with the pool settings and routes of scripts/proxy.toml
    (and so do Compose's)."""
    container = _container(rendered, "marquee-proxy")
    config_path = container["command"][container["command"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in _one(rendered, "Deployment", "marquee-proxy")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    files = _data(rendered, "ConfigMap", volume["configMap"]["name"], exact=True)
    toml = Path(config_path).name
    assert toml in files
    path = tmp_path / toml
    path.write_text(files[toml])
    env = {k: v for k, v in _cluster_env(rendered, container).items() if v is not None}
    cluster = load_proxy_config(str(path), env)
    stack = load_proxy_config(str(ROOT / "scripts" / "proxy.toml"), {})
    compose_env = {k: str(v) for k, v in _compose()["services"]["proxy"]["environment"].items() if "${" not in str(v)}
    compose = load_proxy_config(str(ROOT / "compose" / "proxy.toml"), compose_env)
    stack_pools = {p.name: p for p in stack.pools}
    for other in (cluster, compose):
        assert other.routes == stack.routes
        assert other.default_pool == stack.default_pool
        assert {p.name for p in other.pools} == set(stack_pools)
        for pool in other.pools:
            for setting in POOL_SETTINGS:
                assert getattr(pool, setting) == getattr(stack_pools[pool.name], setting), (pool.name, setting)
    targets = {"app": _port(_container(rendered, "marquee-app"), "http"),
               "live": _port(_container(rendered, "marquee-live"), "http")}
    for pool in cluster.pools:
        assert [_service_port(rendered, b.host, b.port) for b in pool.backends] == [targets[pool.name]], pool.name


def _http_check(healthcheck) -> tuple[int, str] | None:
    """(port, path) of a Compose or Dockerfile health check that GETs a local URL."""
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", healthcheck if isinstance(healthcheck, str) else " ".join(healthcheck))
    return (int(m.group(1)), m.group(2)) if m else None


def test_probes_ask_what_the_stacks_health_checks_ask(rendered):
    compose = _compose()["services"]
    image_check = re.search(r"^HEALTHCHECK .*\n\s*CMD (.*)$", (ROOT / "compose" / "Dockerfile").read_text(), re.M).group(1)
    for program in set(_supervisord()) - set(NOT_IN_THE_CLUSTER):
        service = compose[_compose_service(program)]
        healthcheck = service.get("healthcheck", {})
        container = _container(rendered, f"marquee-{program}")
        if healthcheck.get("disable"):
            assert "livenessProbe" not in container and "readinessProbe" not in container, program
            continue
        port, path = _http_check(healthcheck.get("test", image_check))
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert (_port(container, live["port"]), live["path"]) == (port, path), program
        # ready: the app once PostgreSQL and Redis answer (/ready), the others as they are alive
        assert (_port(container, ready["port"]), ready["path"]) == (port, "/ready" if program == "app" else path), program
    # the proxy checks its pools on the same path
    pools = tomllib.loads((ROOT / "scripts" / "proxy.toml").read_text())
    assert pools["health_path"] == _container(rendered, "marquee-app")["livenessProbe"]["httpGet"]["path"]
    assert pools["pools"]["live"]["health_path"] == _container(rendered, "marquee-live")["livenessProbe"]["httpGet"]["path"]


def test_every_variable_the_stack_sets_is_set_in_the_cluster(rendered):
    compose = _compose()["services"]
    dotenv = _dotenv_names()
    for program, settings in _supervisord().items():
        if program in NOT_IN_THE_CLUSTER:
            continue
        stack = dict(compose[_compose_service(program)].get("environment") or {})
        stack.update(_supervisord_env(settings))
        stack = {name: value for name, value in stack.items() if not TRACING_VARIABLES.match(name)}
        if program in LOADS_DOTENV:
            assert "load_dotenv" in (ROOT / LOADS_DOTENV[program]).read_text()
            stack.update(dict.fromkeys(dotenv - set(stack)))
        cluster = _cluster_env(rendered, _container(rendered, f"marquee-{program}"))
        different = ENV_NOT_IN_THE_CLUSTER.get(program, {})
        assert set(different) <= set(stack), f"{program}: listed as different but no longer set by the stack"
        assert set(stack) - set(cluster) - set(different) == set(), program
        for name, value in compose[_compose_service(program)].get("environment", {}).items():
            if name in cluster and cluster[name] is not None and "${" not in str(value) and name not in ENV_VALUES_DIFFER:
                assert cluster[name] == str(value), (program, name)
    migrate = _cluster_env(rendered, _container(rendered, "marquee-migrate"))
    assert {n for n in compose["migrate"]["environment"] if not TRACING_VARIABLES.match(n)} <= set(migrate)


def test_the_listed_differences_are_still_differences(base):
    """ENV_VALUES_DIFFER names variables Compose sets to another value; drop what agrees again."""
    compose = _compose()["services"]
    for name in ENV_VALUES_DIFFER:
        values = {str(s["environment"][name]) for s in compose.values() if name in (s.get("environment") or {})}
        cluster = {_cluster_env(base, c).get(name) for o in base if o["kind"] == "Deployment"
                   for c in o["spec"]["template"]["spec"]["containers"]}
        assert values and not values & cluster, name


def test_every_setting_in_the_cluster_is_one_a_process_reads(rendered):
    read = "".join((ROOT / f).read_text() for f in ("app/config.py", "live/config.py", "gunicorn.conf.py"))
    proxy_fields = {"PROXY_" + f.upper() for f in ProxyConfig.__dataclass_fields__}
    referenced = {i["valueFrom"]["secretKeyRef"]["key"] for o in rendered if o["kind"] in ("Deployment", "Job")
                  for c in o["spec"]["template"]["spec"]["containers"] for i in c.get("env", []) if "valueFrom" in i}
    for kind, name in (("ConfigMap", "marquee-config"), ("Secret", "marquee-secrets")):
        for key in _data(rendered, kind, name):
            assert f'"{key}"' in read or key in proxy_fields or key in referenced, key


def test_secrets_are_apart_and_none_is_committed(base, checkout):
    config, secrets = _data(base, "ConfigMap", "marquee-config"), _data(base, "Secret", "marquee-secrets")
    # what Compose insists its caller provides, and every URL with a password, is a secret
    required = {n for n, v in _compose()["x-app-env"].items() if str(v).startswith("${") and ":?" in str(v)}
    assert required | {"DATABASE_URL", "REDIS_URL", "AMQP_URL", "ADMIN_PASSWORD"} <= set(secrets)
    assert not set(config) & set(secrets)
    assert all("change-me" in v or v == "" for v in secrets.values()), "a real-looking secret is committed"
    # the production overlay replaces the whole Secret from a file no commit carries...
    overlay = yaml.safe_load((K8S / "overlays" / "production" / "kustomization.yaml").read_text())
    generator = next(g for g in overlay["secretGenerator"] if g["name"] == "marquee-secrets")
    assert generator["behavior"] == "replace"
    ignored = subprocess.run(["git", "check-ignore", "-q", f"k8s/overlays/production/{generator['env']}"], cwd=ROOT)
    assert ignored.returncode == 0, "the production secrets file must be git-ignored"
    # ...and without it rendering fails, naming the file
    bare = checkout.parent / "bare"
    shutil.copytree(K8S, bare, ignore=shutil.ignore_patterns("secrets.env"))
    result = _render(bare / "overlays" / "production")
    assert result.returncode != 0 and generator["env"] in result.stderr


def test_termination_waits_as_long_as_the_stack_does(rendered):
    """The grace period covers the preStop pause and the process's own drain, at least as long as
    supervisord's stopwaitsecs and Compose's stop_grace_period."""
    compose = _compose()["services"]
    for program, settings in _supervisord().items():
        if program in NOT_IN_THE_CLUSTER:
            continue
        pod = _one(rendered, "Deployment", f"marquee-{program}")["spec"]["template"]["spec"]
        stack = max(int(settings.get("stopwaitsecs", 10)),
                    int(str(compose[_compose_service(program)].get("stop_grace_period", "10s")).rstrip("s")))
        pre_stop = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
        assert pod["terminationGracePeriodSeconds"] >= stack + pause, program
        if program in ("app", "proxy", "live"):  # behind a Service: out of its endpoints first
            assert pause > 0, program


def test_every_pod_is_locked_down_sized_and_budgeted(rendered):
    budgets = [o for o in rendered if o["kind"] == "PodDisruptionBudget"]
    for obj in rendered:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            # read-only root: the scratch folders are volumes (gunicorn's heartbeat and the
            # Prometheus files in /tmp, var/ for whatever writes there)
            assert {"/tmp", "/app/var"} <= {m["mountPath"] for m in container["volumeMounts"]}
        if obj["kind"] == "Deployment":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
            assert len(covering) == 1, obj["metadata"]["name"]
            if "minAvailable" in covering[0]["spec"]:
                assert covering[0]["spec"]["minAvailable"] < obj["spec"]["replicas"]


def test_the_scheduler_runs_more_than_once_because_its_lock_allows_it(rendered):
    assert "advisory" in (ROOT / "worker" / "scheduler.py").read_text()
    assert _one(rendered, "Deployment", "marquee-scheduler")["spec"]["replicas"] >= 2


def test_the_engines_are_external_services_the_urls_name(rendered):
    secrets = _data(rendered, "Secret", "marquee-secrets")
    config = _data(rendered, "ConfigMap", "marquee-config")
    hosts = {"DATABASE_URL": 5432, "DATABASE_URL_DIRECT": 5432, "REDIS_URL": 6379, "AMQP_URL": 5672}
    for name, port in hosts.items():
        host = re.search(r"@([\w.-]+):(\d+)/", secrets[name])
        service = _one(rendered, "Service", host.group(1))
        assert service["spec"]["type"] == "ExternalName" and int(host.group(2)) == port
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
    smtp = _one(rendered, "Service", config["SMTP_HOST"])
    assert smtp["spec"]["type"] == "ExternalName" and smtp["spec"]["ports"][0]["port"] == int(config["SMTP_PORT"])
