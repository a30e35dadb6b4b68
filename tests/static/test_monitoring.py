"""Monitoring as code, checked without a running stack: Prometheus' rules (`promtool check rules`,
`promtool test rules`), its configuration, the Grafana dashboards (committed JSON = the
generator's output, structure, provisioning) and Alertmanager's configuration (structure only:
no Alertmanager binary runs here). Whether each query returns data is
tests/integration/monitoring's job."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "docker/prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
GRAFANA = ROOT / "docker/grafana"
ALERTMANAGER = ROOT / "docker/alertmanager/alertmanager.yml"
SEVERITIES = {"critical", "warning"}
METRIC_NAME = re.compile(r"\b(flightdeck_[a-z_]+|dask_[a-z_]+)\b")


def promtool() -> str:
    return require_service("the `promtool` binary (Fix: `apt-get install -y prometheus`, Debian's package)",
                           lambda: shutil.which("promtool"))


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def load_generator():
    spec = importlib.util.spec_from_file_location("flightdeck_dashboards", GRAFANA / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


# --- Prometheus -------------------------------------------------------------------------


def test_promtool_checks_every_rule_file():
    assert RULE_FILES, "no rule file under docker/prometheus/rules"
    done = run_promtool("check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_prometheus_config():
    done = run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(RULE_FILES)} rule files found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    done = run_promtool("test", "rules", *(str(p.relative_to(PROMETHEUS)) for p in RULE_TESTS), cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS) >= 2


def test_promtool_unit_tests_fail_on_a_loosened_rule(tmp_path):
    """The unit tests can fail: with the canary's error margin raised from 0.5 % to 50 % the
    firing expected of a 10 % canary does not happen."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    gateway = copy / "rules/gateway.yml"
    text = gateway.read_text()
    assert text.count("  > 0.005\n") == 1
    gateway.write_text(text.replace("  > 0.005\n", "  > 0.5\n"))
    done = run_promtool("test", "rules", "tests/gateway_test.yml", cwd=copy)
    assert done.returncode != 0
    assert "FlightdeckCanaryErrorRateAboveBaseline" in done.stdout + done.stderr


def test_every_alert_has_a_severity_a_summary_and_a_description():
    problems = [a["alert"] for a in alerts()
                if a.get("labels", {}).get("severity") not in SEVERITIES
                or not {"summary", "description"} <= set(a.get("annotations", {}))]
    assert alerts() and problems == []


def test_every_alert_is_unit_tested():
    tested = {case["alertname"] for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert {a["alert"] for a in alerts()} - tested == set()


def exported_names() -> set[str]:
    """Every sample name the gateway and the stream scorer export."""
    from flightdeck.serving.metrics import GatewayMetrics
    from flightdeck.streaming.metrics import StreamMetrics

    names = set()
    for metrics in (GatewayMetrics(), StreamMetrics()):
        for family in metrics.registry.collect():
            kind = family.type
            if kind == "counter":
                names.add(f"{family.name}_total")
            elif kind == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def test_rules_and_dashboards_use_only_metrics_that_exist():
    """A typo in a metric name makes a query silently empty: every flightdeck_* name in a rule or a
    panel is a recording rule's or a series the gateway or the stream scorer exports."""
    from flightdeck.delivery.sources import prometheus as gate_source

    recorded = {rule["record"].split(":")[1] for rule in rules() if "record" in rule}
    exported = exported_names()
    assert set(gate_source._METRICS) <= exported  # the release gates read the same names
    texts = [rule["expr"] for rule in rules()]
    texts += [target["expr"] for board in load_generator().render().values()
              for target in targets(json.loads(board))]
    used = {name for text in texts for name in METRIC_NAME.findall(text) if name.startswith("flightdeck_")}
    assert used - exported - recorded == set()
    assert "flightdeck_requests_total" in used and "flightdeck_stream_drift_alerts_total" in used


# --- Grafana ----------------------------------------------------------------------------


def targets(board: dict) -> list[dict]:
    return [target for panel in board["panels"] for target in panel.get("targets", [])]


def test_committed_dashboards_are_the_generators_output():
    rendered = load_generator().render()
    committed = {path.name: path.read_text() for path in (GRAFANA / "dashboards").glob("*.json")}
    assert set(committed) == set(rendered) == {"serving.json", "releases.json", "streaming-batch.json"}
    stale = [name for name in rendered if committed[name] != rendered[name]]
    assert stale == [], f"{stale} differ: run python docker/grafana/dashboards.py"


def test_dashboards_are_well_formed_for_grafana():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    uids = {source["uid"] for source in datasource}
    boards = {path.name: json.loads(path.read_text()) for path in (GRAFANA / "dashboards").glob("*.json")}
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        variables = {variable["name"] for variable in board.get("templating", {}).get("list", [])}
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            assert panel.get("options"), f"{name}: panel {panel['title']!r} has no options (Grafana wants an object)"
            assert panel["datasource"]["uid"] in uids, f"{name}: {panel['title']!r} uses an unknown data source"
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), f"{name}: {panel['title']!r} repeats a refId"
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= variables, f"{name}: {panel['title']!r} uses undefined variables {used - variables}"


def test_grafana_provisioning_files_are_well_formed():
    (source,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["uid"] == load_generator().DATASOURCE_UID
    provider_files = list((GRAFANA / "provisioning/dashboards").glob("*.yaml"))
    assert provider_files
    for path in provider_files:
        document = yaml.safe_load(path.read_text())
        assert document["apiVersion"] == 1
        for provider in document["providers"]:
            assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# --- Alertmanager -----------------------------------------------------------------------

MATCHER = re.compile(r'^(\w+)(=~|!~|!=|=)"(.*)"$')


def alertmanager_problems(config: dict) -> list[str]:
    """What Alertmanager would refuse or what would route an alert nowhere."""
    problems = []
    receivers = {r["name"] for r in config.get("receivers", [])}
    names = {a["alert"] for a in alerts()}

    def walk(route: dict, where: str) -> None:
        if route.get("receiver") not in receivers and (where == "route" or "receiver" in route):
            problems.append(f"{where}: receiver {route.get('receiver')!r} is not defined")
        for matcher in route.get("matchers", []):
            if not MATCHER.match(matcher):
                problems.append(f"{where}: matcher {matcher!r} is not label<op>\"value\"")
        for i, child in enumerate(route.get("routes", [])):
            walk(child, f"{where}.routes[{i}]")

    walk(config.get("route", {}), "route")
    severities = {MATCHER.match(m).group(3) for child in config.get("route", {}).get("routes", [])
                  for m in child.get("matchers", []) if MATCHER.match(m) and m.startswith("severity")}
    if severities != SEVERITIES:
        problems.append(f"routes by severity {sorted(severities)}, alerts use {sorted(SEVERITIES)}")
    for i, rule in enumerate(config.get("inhibit_rules", [])):
        for side in ("source_matchers", "target_matchers"):
            for matcher in rule.get(side, []):
                match = MATCHER.match(matcher)
                if not match:
                    problems.append(f"inhibit_rules[{i}].{side}: {matcher!r} is not label<op>\"value\"")
                elif match.group(1) == "alertname" and not any(
                        re.fullmatch(match.group(3), n) for n in names):
                    problems.append(f"inhibit_rules[{i}].{side}: {matcher!r} matches no alert of the rules")
    return problems


def test_alertmanager_config_routes_every_alert():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert alertmanager_problems(config) == []


@pytest.mark.parametrize("breakage", ["unknown_receiver", "stale_alertname", "bad_matcher"])
def test_alertmanager_check_catches_a_broken_config(breakage):
    config = yaml.safe_load(ALERTMANAGER.read_text())
    if breakage == "unknown_receiver":
        config["route"]["routes"][0]["receiver"] = "nobody"
    elif breakage == "stale_alertname":
        config["inhibit_rules"][0]["source_matchers"] = ['alertname="FlightdeckNoSuchAlert"']
    else:
        config["route"]["routes"][0]["matchers"] = ["severity = critical"]
    assert alertmanager_problems(config)
