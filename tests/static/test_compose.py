"""Static checks of docker-compose.yaml: no Docker engine runs here, so the stack is checked
against the Compose Specification schema and against rules the schema cannot express.

Each semantic rule is a function returning a list of problems; every rule is also run on a
deliberately broken copy of the file to prove that it can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
]
MONITORING_SERVICES = ["prometheus", "alertmanager", "grafana"]
REQUIRED_SERVICES = ["postgres", "airflow-init", *AIRFLOW_SERVICES, "mlflow", "dask-scheduler", "redis", "gateway",
                     "stream-redis", "stream-scorer", *MONITORING_SERVICES]
# The Airflow connection the promotion DAGs reach the gateway through (flightdeck.airflow.release).
GATEWAY_CONN_ID = re.search(r'GATEWAY_CONN_ID = "([a-z_]+)"',
                            (ROOT / "include/flightdeck/airflow/release.py").read_text()).group(1)
# ${VAR}, ${VAR:-default}, ${VAR:?error}; "$${…}" is an escaped literal "$" for the container.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
REQUIRED_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|^KEY$", re.IGNORECASE)
URI_PASSWORD = re.compile(r"://[^/:@\s]+:([^@\s]*)@")
# redis[s]://[user:password@]host; a ${VAR:?message} password may contain spaces.
REDIS_URL = re.compile(r"rediss?://(?:((?:\$\{[^}]*\}|[^@/\s$])*)@)?([^:/\s]+)")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator: jsonschema.Draft7Validator, data: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(data)
    ]


def test_compose_matches_the_compose_specification(compose, validator):
    assert schema_errors(validator, compose) == []


@pytest.mark.parametrize("breakage", ["ports_not_a_list", "unknown_service_key"])
def test_schema_rejects_a_broken_compose_file(compose, validator, breakage):
    broken = copy.deepcopy(compose)
    if breakage == "ports_not_a_list":
        broken["services"]["mlflow"]["ports"] = "nonsense"
    else:
        broken["services"]["mlflow"]["no_such_key"] = True
    assert schema_errors(validator, broken), f"schema accepted {breakage}"


# --- semantic rules ---------------------------------------------------------------------


def depends_on(service: dict) -> dict[str, str]:
    """{target: condition} for the short (list) and long (mapping) syntax."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def strings(node) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def documented_variables() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            names.add(line.split("=", 1)[0].removeprefix("export ").strip())
    return names


def depends_on_targets_exist(compose: dict) -> list[str]:
    services = compose["services"]
    return [
        f"{name} depends on undefined service {target}"
        for name, service in services.items()
        for target in depends_on(service)
        if target not in services
    ]


def required_services_exist(compose: dict) -> list[str]:
    services = compose["services"]
    problems = [f"missing service {name}" for name in REQUIRED_SERVICES if name not in services]
    workers = sum(
        service.get("deploy", {}).get("replicas", 1)
        for name, service in services.items()
        if name.startswith("dask-worker")
    )
    if workers < 2:
        problems.append(f"need two Dask workers, found {workers}")
    return problems


def airflow_waits_for_init(compose: dict) -> list[str]:
    return [
        f"{name} must depend on airflow-init with service_completed_successfully"
        for name in AIRFLOW_SERVICES
        if depends_on(compose["services"].get(name, {})).get("airflow-init")
        != "service_completed_successfully"
    ]


def dockerfiles_exist(compose: dict) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            context = ROOT / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"{name}: no Dockerfile at {dockerfile.relative_to(ROOT)}")
    return problems


def variables_documented(compose: dict) -> list[str]:
    documented = documented_variables()
    used = {match.group(1) for text in strings(compose) for match in INTERPOLATION.finditer(text)}
    return [f"${{{name}}} is not listed in .env.example" for name in sorted(used - documented)]


def from_required_variables(value: str) -> bool:
    """A required ${VAR:?…}, or a JSON object (e.g. {"name": token}) whose every value is one."""
    if REQUIRED_VAR.fullmatch(value):
        return True
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and bool(document) and all(
        isinstance(v, str) and REQUIRED_VAR.fullmatch(v) for v in document.values())


def no_inline_secrets(compose: dict) -> list[str]:
    """Secrets must come from .env as ${VAR:?…}: no literal value, no silent default."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not from_required_variables(value):
                problems.append(f"{name}: {key} is not a required ${{VAR:?…}}")
    for text in strings(compose):
        for password in URI_PASSWORD.findall(text):
            if not REQUIRED_VAR.fullmatch(password):
                problems.append(f"literal password in URI {text!r}")
    return problems


def ports_loopback_only(compose: dict) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port)
            if not str(host_ip).startswith("127.0.0.1"):
                problems.append(f"{name}: port {port!r} is not bound to 127.0.0.1")
    return problems


def healthy_dependencies_have_healthchecks(compose: dict) -> list[str]:
    services = compose["services"]
    problems = []
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            check = services.get(target, {}).get("healthcheck", {})
            if condition == "service_healthy" and (not check.get("test") or check.get("disable")):
                problems.append(f"{name} waits for {target} to be healthy; it has no healthcheck")
    return problems


def airflow_settings(compose: dict) -> list[str]:
    """Airflow 3.3 on PostgreSQL with LocalExecutor, tasks reaching the api-server."""
    expected_url = "http://airflow-apiserver:8080/execution/"
    problems = []
    for name in ["airflow-init", *AIRFLOW_SERVICES]:
        env = environment(compose["services"].get(name, {}))
        if env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") != expected_url:
            problems.append(f"{name}: execution_api_server_url is not {expected_url}")
        if env.get("AIRFLOW__CORE__EXECUTOR") != "LocalExecutor":
            problems.append(f"{name}: executor is not LocalExecutor")
        if env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() != "false":
            problems.append(f"{name}: load_examples is not false")
        if not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").startswith("postgresql"):
            problems.append(f"{name}: metadata database is not PostgreSQL")
        if not REQUIRED_VAR.fullmatch(env.get("AIRFLOW__API_AUTH__JWT_SECRET", "")):
            problems.append(f"{name}: JWT secret is not a required ${{VAR:?…}}")
    return problems


def stream_redis_keeps_state(compose: dict) -> list[str]:
    """The stream scorer's Redis never evicts and persists with AOF; every flightdeck process points at it."""
    command = compose["services"].get("stream-redis", {}).get("command", [])
    text = " ".join(command) if isinstance(command, list) else str(command)
    problems = []
    if not re.search(r"--maxmemory-policy\s+noeviction\b", text):
        problems.append("stream-redis: maxmemory-policy is not noeviction")
    if not re.search(r"--appendonly\s+yes\b", text):
        problems.append("stream-redis: AOF persistence is off")
    if "/data" not in " ".join(str(v) for v in compose["services"].get("stream-redis", {}).get("volumes", [])):
        problems.append("stream-redis: /data is not on a volume")
    url = REDIS_URL.match(compose.get("x-flightdeck-env", {}).get("FLIGHTDECK_STREAM_REDIS_URL", ""))
    if not url or url.group(2) != "stream-redis":
        problems.append("FLIGHTDECK_STREAM_REDIS_URL does not point at stream-redis")
    return problems


def redis_services(compose: dict) -> list[str]:
    return [name for name, service in compose["services"].items()
            if str(service.get("image", "")).split(":")[0].split("/")[-1] == "redis"]


def redis_requires_password(compose: dict) -> list[str]:
    """Every Redis requires a password from .env, its healthcheck authenticates, and every
    redis:// URL that points at it carries that password."""
    problems = []
    names = redis_services(compose)
    for name in names:
        service = compose["services"][name]
        command = service.get("command", [])
        words = command if isinstance(command, list) else str(command).split()
        given = words[words.index("--requirepass") + 1] if "--requirepass" in words[:-1] else None
        if given is None or not REQUIRED_VAR.fullmatch(given):
            problems.append(f"{name}: redis-server does not --requirepass a required ${{VAR:?…}}")
        test = service.get("healthcheck", {}).get("test", [])
        if "REDISCLI_AUTH" not in (" ".join(test) if isinstance(test, list) else str(test)):
            problems.append(f"{name}: the healthcheck does not authenticate (REDISCLI_AUTH)")
    for text in strings(compose):
        for match in REDIS_URL.finditer(text):
            userinfo, host = match.groups()
            password = (userinfo or "").partition(":")[2]
            if host in names and not REQUIRED_VAR.fullmatch(password):
                problems.append(f"{match.group(0)!r} reaches {host} without its password")
    return problems


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount from the repository (short syntax "./x:/y[:ro]")."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith("./"):
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            mounts.append((volume["source"], volume["target"]))
    return mounts


def bind_mounts_exist(compose: dict) -> list[str]:
    """Every file or folder a service mounts from the repository is in the repository."""
    return [f"{name}: mounts {source}, which is not in the repository"
            for name, service in compose["services"].items()
            for source, _ in bind_mounts(service) if not (ROOT / source).exists()]


def mounted_file(service: dict, container_path: str) -> Path | None:
    """The repository file a service sees at `container_path` through its bind mounts."""
    for source, target in bind_mounts(service):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return ROOT / source / container_path[len(target):].lstrip("/")
    return None


def command_flag(service: dict, flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in a service's command list."""
    words = service.get("command", [])
    for i, word in enumerate(words):
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
        if word == flag and i + 1 < len(words):
            return words[i + 1]
    return None


def monitoring_wiring(compose: dict) -> list[str]:
    """Prometheus reads the repository's config and scrapes the services where they serve
    /metrics, alerts go to Alertmanager, Grafana provisions the generated dashboards and a data
    source that points at Prometheus."""
    services = compose["services"]
    problems = []
    prometheus = services.get("prometheus", {})
    config_path = mounted_file(prometheus, command_flag(prometheus, "--config.file") or "")
    if config_path is None or not config_path.is_file():
        return ["prometheus: --config.file is not a file mounted from the repository"]
    config = yaml.safe_load(config_path.read_text())
    scrapes = {job["job_name"]: [t for c in job.get("static_configs", []) for t in c["targets"]]
               for job in config.get("scrape_configs", [])}
    scorer_port = command_flag(services.get("stream-scorer", {}), "--metrics-port")
    dask_port = (command_flag(services.get("dask-scheduler", {}), "--dashboard-address") or "").rpartition(":")[2]
    expected = {"gateway": "gateway:8000", "stream-scorer": f"stream-scorer:{scorer_port}",
                "dask-scheduler": f"dask-scheduler:{dask_port}"}
    for job, target in expected.items():
        if scrapes.get(job) != [target]:
            problems.append(f"prometheus: job {job} scrapes {scrapes.get(job)}, expected [{target!r}]")
    if command_flag(services.get("stream-scorer", {}), "--metrics-host") != "0.0.0.0":
        problems.append("stream-scorer: /metrics listens on loopback only; Prometheus cannot reach it")
    alertmanagers = [t for a in config.get("alerting", {}).get("alertmanagers", [])
                     for c in a.get("static_configs", []) for t in c["targets"]]
    if alertmanagers != ["alertmanager:9093"]:
        problems.append(f"prometheus: alerts go to {alertmanagers}, not alertmanager:9093")
    for pattern in config.get("rule_files", []):
        if not list(config_path.parent.glob(pattern)):
            problems.append(f"prometheus: rule_files {pattern!r} matches no file")
    alertmanager = services.get("alertmanager", {})
    am_config = mounted_file(alertmanager, command_flag(alertmanager, "--config.file") or "")
    if am_config is None or not am_config.is_file():
        problems.append("alertmanager: --config.file is not a file mounted from the repository")
    grafana = services.get("grafana", {})
    provisioning = mounted_file(grafana, "/etc/grafana/provisioning")
    if provisioning is None or not (provisioning / "datasources").is_dir():
        return [*problems, "grafana: /etc/grafana/provisioning is not mounted from the repository"]
    for provider_file in sorted((provisioning / "dashboards").glob("*.yaml")):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            folder = mounted_file(grafana, provider["options"]["path"])
            if folder is None or not list(folder.glob("*.json")):
                problems.append(f"grafana: provider {provider['name']} reads {provider['options']['path']}, "
                                "where no dashboard JSON is mounted")
    urls = [source["url"] for f in sorted((provisioning / "datasources").glob("*.yaml"))
            for source in yaml.safe_load(f.read_text())["datasources"] if source["type"] == "prometheus"]
    if urls != ["http://prometheus:9090"]:
        problems.append(f"grafana: Prometheus data sources {urls}, expected ['http://prometheus:9090']")
    return problems


def airflow_connections(compose: dict) -> list[str]:
    """Every Airflow service defines the gateway connection the promotion DAGs use: the gateway
    service, with a token that the gateway accepts as an admin token."""
    variable = f"AIRFLOW_CONN_{GATEWAY_CONN_ID.upper()}"
    admin_tokens = environment(compose["services"].get("gateway", {})).get("FLIGHTDECK_ADMIN_TOKENS", "")
    problems = []
    for name in ["airflow-init", *AIRFLOW_SERVICES]:
        uri = environment(compose["services"].get(name, {})).get(variable)
        if uri is None:
            problems.append(f"{name}: no {variable}")
            continue
        match = re.fullmatch(r"https?://[^:@/]*:(\$\{[^}]*\})@([^:/]+):(\d+)", uri)
        if not match:
            problems.append(f"{name}: {variable} is not http://login:${{TOKEN:?…}}@host:port")
            continue
        token, host, port = match.groups()
        if not REQUIRED_VAR.fullmatch(token) or token not in admin_tokens:
            problems.append(f"{name}: {variable}'s token is not one of the gateway's FLIGHTDECK_ADMIN_TOKENS")
        if (host, port) != ("gateway", "8000"):
            problems.append(f"{name}: {variable} points at {host}:{port}, not gateway:8000")
    return problems


POSTGRES_URL = re.compile(r"postgresql(?:\+\w+)?://([^:@/]+):(\$\{[^}]*\})@([^:/]+):(\d+)/(\w+)")
INIT_SCRIPT = ROOT / "docker" / "postgres" / "init-databases.sh"


def airflow_reaches_the_gateway_database(compose: dict) -> list[str]:
    """Airflow's tasks read the gateway's prediction log and hold the release lock in the gateway's
    database: every Airflow service points gateway_database_url at the PostgreSQL database the gateway
    uses, as a role of its own (not `gateway`, which owns the log) that the init script creates,
    with a password from .env that the postgres service hands to that script."""
    services = compose["services"]
    gateway = POSTGRES_URL.fullmatch(environment(services.get("gateway", {})).get("FLIGHTDECK_GATEWAY_DATABASE_URL", ""))
    if not gateway:
        return ["gateway: FLIGHTDECK_GATEWAY_DATABASE_URL is not postgresql://role:${VAR:?…}@host:port/database"]
    passed = {m.group(1) for v in environment(services.get("postgres", {})).values() for m in INTERPOLATION.finditer(v)}
    created = set(re.findall(r"^CREATE ROLE (\w+) LOGIN", INIT_SCRIPT.read_text(), re.MULTILINE))
    problems = []
    for name in AIRFLOW_SERVICES:
        url = environment(services.get(name, {})).get("FLIGHTDECK_GATEWAY_DATABASE_URL")
        match = POSTGRES_URL.fullmatch(url or "")
        if not match:
            problems.append(f"{name}: FLIGHTDECK_GATEWAY_DATABASE_URL is {url!r}, not "
                            "postgresql://role:${VAR:?…}@host:port/database (tasks would use a SQLite file)")
            continue
        role, password, *where = match.groups()
        if role == gateway.group(1) or INTERPOLATION.findall(password) == INTERPOLATION.findall(gateway.group(2)):
            problems.append(f"{name}: reaches the gateway's database as the gateway's own role {role!r}")
        if where != list(gateway.groups()[2:]):
            problems.append(f"{name}: gateway_database_url points at {':'.join(where)}, "
                            f"not the gateway's {':'.join(gateway.groups()[2:])}")
        if role not in created:
            problems.append(f"{name}: role {role!r} is not created by {INIT_SCRIPT.relative_to(ROOT)}")
        if not REQUIRED_VAR.fullmatch(password) or INTERPOLATION.match(password).group(1) not in passed:
            problems.append(f"{name}: the password of {role!r} is not a required ${{VAR:?…}} "
                            "that the postgres service passes to its init script")
    return problems


RULES: list[Callable[[dict], list[str]]] = [
    depends_on_targets_exist,
    required_services_exist,
    airflow_waits_for_init,
    dockerfiles_exist,
    variables_documented,
    no_inline_secrets,
    ports_loopback_only,
    healthy_dependencies_have_healthchecks,
    airflow_settings,
    stream_redis_keeps_state,
    redis_requires_password,
    bind_mounts_exist,
    monitoring_wiring,
    airflow_connections,
    airflow_reaches_the_gateway_database,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_compose_rule_holds(compose, rule):
    assert rule(compose) == []


def _break(compose: dict, rule_name: str) -> None:
    """Make the smallest change to `compose` that `rule_name` must report."""
    services = compose["services"]
    if rule_name == "depends_on_targets_exist":
        services["mlflow"]["depends_on"] = {"ghost": {"condition": "service_started"}}
    elif rule_name == "required_services_exist":
        del services["dask-worker-2"]
    elif rule_name == "airflow_waits_for_init":
        services["airflow-scheduler"]["depends_on"] = {
            "airflow-init": {"condition": "service_started"}
        }
    elif rule_name == "dockerfiles_exist":
        services["mlflow"]["build"] = {"context": ".", "dockerfile": "docker/nope/Dockerfile"}
    elif rule_name == "variables_documented":
        services["mlflow"]["environment"] = {"EXTRA": "${UNDOCUMENTED_VARIABLE:?x}"}
    elif rule_name == "no_inline_secrets":
        services["postgres"]["environment"] = {"POSTGRES_PASSWORD": "hunter2"}
    elif rule_name == "ports_loopback_only":
        services["mlflow"]["ports"] = ["5000:5000"]
    elif rule_name == "healthy_dependencies_have_healthchecks":
        del services["postgres"]["healthcheck"]
    elif rule_name == "airflow_settings":
        env = dict(environment(services["airflow-scheduler"]))
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = "http://localhost:8080/execution/"
        services["airflow-scheduler"]["environment"] = env
    elif rule_name == "stream_redis_keeps_state":
        services["stream-redis"]["command"] = ["redis-server", "--appendonly", "yes",
                                               "--maxmemory-policy", "allkeys-lru"]
    elif rule_name == "redis_requires_password":
        services["redis"]["command"] = ["redis-server", "--maxmemory-policy", "allkeys-lru"]
    elif rule_name == "bind_mounts_exist":
        services["grafana"]["volumes"][0] = "./docker/grafana/no-such-folder:/etc/grafana/provisioning:ro"
    elif rule_name == "monitoring_wiring":
        services["stream-scorer"]["command"] = ["flightdeck", "stream", "--metrics-port", "9200"]
    elif rule_name == "airflow_connections":
        env = dict(environment(services["airflow-triggerer"]))
        del env[f"AIRFLOW_CONN_{GATEWAY_CONN_ID.upper()}"]
        services["airflow-triggerer"]["environment"] = env
    elif rule_name == "airflow_reaches_the_gateway_database":
        env = dict(environment(services["airflow-scheduler"]))
        env["FLIGHTDECK_GATEWAY_DATABASE_URL"] = environment(services["gateway"])["FLIGHTDECK_GATEWAY_DATABASE_URL"]
        services["airflow-scheduler"]["environment"] = env
    else:
        raise AssertionError(f"no breakage written for {rule_name}")


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_compose_rule_catches_a_broken_file(rule):
    broken = load_compose()
    _break(broken, rule.__name__)
    assert rule(broken), f"{rule.__name__} accepted a broken compose file"


def test_a_redis_url_without_the_password_is_reported():
    broken = load_compose()
    broken["services"]["gateway"]["environment"]["FLIGHTDECK_REDIS_URL"] = "redis://redis:6379/0"
    assert redis_requires_password(broken) == ["'redis://redis' reaches redis without its password"]


def test_a_literal_token_inside_the_admin_tokens_json_is_reported():
    broken = load_compose()
    broken["services"]["gateway"]["environment"]["FLIGHTDECK_ADMIN_TOKENS"] = \
        '{"airflow": "${GATEWAY_AIRFLOW_TOKEN:?x}", "ops": "a-literal-token-0123456789"}'
    assert no_inline_secrets(broken) == ["gateway: FLIGHTDECK_ADMIN_TOKENS is not a required ${VAR:?…}"]


def test_an_airflow_token_the_gateway_does_not_accept_is_reported():
    broken = load_compose()
    broken["services"]["gateway"]["environment"]["FLIGHTDECK_ADMIN_TOKENS"] = \
        '{"ops": "${GATEWAY_OPS_TOKEN:?set GATEWAY_OPS_TOKEN in .env}"}'
    problems = airflow_connections(broken)
    assert len(problems) == 1 + len(AIRFLOW_SERVICES)
    assert all("is not one of the gateway's FLIGHTDECK_ADMIN_TOKENS" in p for p in problems)


@pytest.mark.parametrize(("url", "expected"), [
    (None, "tasks would use a SQLite file"),
    ("sqlite:////opt/flightdeck/gateway/gateway.db", "tasks would use a SQLite file"),
    ("postgresql+psycopg2://releases:${RELEASES_DB_PASSWORD:?x}@postgres:5432/airflow",
     "not the gateway's postgres:5432:gateway"),
    ("postgresql+psycopg2://reader:${RELEASES_DB_PASSWORD:?x}@postgres:5432/gateway",
     "role 'reader' is not created by docker/postgres/init-databases.sh"),
    ("postgresql+psycopg2://releases:${UNPASSED_PASSWORD:?x}@postgres:5432/gateway",
     "that the postgres service passes to its init script"),
])
def test_an_airflow_service_off_the_gateway_database_or_its_role_is_reported(url, expected):
    broken = load_compose()
    env = dict(environment(broken["services"]["airflow-triggerer"]))
    env.pop("FLIGHTDECK_GATEWAY_DATABASE_URL")
    if url is not None:
        env["FLIGHTDECK_GATEWAY_DATABASE_URL"] = url
    broken["services"]["airflow-triggerer"]["environment"] = env
    problems = airflow_reaches_the_gateway_database(broken)
    assert len(problems) == 1 and problems[0].startswith("airflow-triggerer: ") and expected in problems[0], problems
