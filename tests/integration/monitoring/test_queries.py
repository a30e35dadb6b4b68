"""Every rule and every dashboard query returns data from a real Prometheus scraping a real
gateway under load, a real stream scorer and a real Dask scheduler (the `monitored` fixture).

Recording rules are read as they are recorded. An alert's expression returns series only while
it fires, so it is asked with every comparison turned into a `bool` one (`x > 0.005` →
`x > bool 0.005`): data then means every series the alert compares exists. The alerts this
traffic must trigger (a failing, slower canary; dead letters) are asked as they are written.
Panel queries are asked with Grafana's variables at "All" and `$__rate_interval` at 1 m.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.poll import eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
RULE_FILES = sorted((REPO / "docker/prometheus/rules").glob("*.yml"))
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*bool\b)?")


def as_bool(expr: str) -> str:
    """`expr` with every comparison outside label matchers, ranges and strings made a `bool` one."""
    out, depth, quote, i = [], 0, None, 0
    while i < len(expr):
        char = expr[i]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(expr[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
            out.append(char)
        elif char in "{[":
            depth += 1
            out.append(char)
        elif char in "}]":
            depth -= 1
            out.append(char)
        elif depth == 0 and (match := COMPARISON.match(expr, i)) and not expr.startswith(("=~", "!~"), i):
            out.append(match.group(0) if match.group(2) else f"{match.group(1)} bool")
            i += len(match.group(0))
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def test_as_bool_turns_only_comparisons_into_bool_ones():
    assert as_bool('up{job="gateway"} == 0') == 'up{job="gateway"} == bool 0'
    assert as_bool('a{v!="x",w=~"y|z"} - ignoring (v) b > 0.005\nand ignoring (v) c{v="c"} > 0.1') == \
        'a{v!="x",w=~"y|z"} - ignoring (v) b > bool 0.005\nand ignoring (v) c{v="c"} > bool 0.1'
    assert as_bool("x >= bool 1") == "x >= bool 1"
    assert as_bool('sum(rate(m{le=">"}[5m])) <= 2') == 'sum(rate(m{le=">"}[5m])) <= bool 2'


def rule_queries() -> dict[str, str]:
    queries = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    queries[f"record {rule['record']}"] = rule["record"]
                else:
                    queries[f"alert {rule['alert']}"] = as_bool(rule["expr"])
    return queries


def dashboards() -> dict[str, dict]:
    spec = importlib.util.spec_from_file_location("flightdeck_dashboards", REPO / "docker/grafana/dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: json.loads(text) for name, text in module.render().items()}


def grafana_expr(expr: str) -> str:
    """A panel's PromQL as Grafana sends it with every variable at "All" (allValue .*)."""
    expr = expr.replace("$__rate_interval", "1m")
    return re.sub(r"\$(\w+)", ".*", expr)


def panel_queries() -> dict[str, str]:
    return {f"{name} / {panel['title']} / {target['refId']}": grafana_expr(target["expr"])
            for name, board in dashboards().items() for panel in board["panels"]
            for target in panel.get("targets", [])}


def instant(prometheus: str, expr: str) -> dict:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr, "time": f"{time.time():.3f}"},
                      timeout=10).json()
    assert reply["status"] == "success", f"{expr}: {reply.get('error')}"
    return reply["data"]


def empty(prometheus: str, queries: dict[str, str]) -> dict[str, str]:
    """The queries that return no series (or an empty scalar) right now."""
    found = {}
    for name, expr in queries.items():
        data = instant(prometheus, expr)
        if data["resultType"] in ("vector", "matrix") and not data["result"]:
            found[name] = expr
    return found


def test_every_target_is_scraped(monitored):
    def all_up():
        up = {r["metric"]["job"]: r["value"][1] for r in instant(monitored.prometheus, "up")["result"]}
        return up if up == {job: "1" for job in monitored.jobs} else None

    eventually(all_up, 30, 0.5, what="every job up",
               detail=lambda: str(instant(monitored.prometheus, "up")["result"]))


def wait_until_every_query_returns_data(prometheus: str, queries: dict[str, str], what: str) -> None:
    """Poll until none of `queries` is empty; on timeout name the empty ones."""
    missing: dict[str, str] = {}

    def none_empty() -> bool:
        missing.clear()
        missing.update(empty(prometheus, queries))
        return not missing

    eventually(none_empty, 45, 1.0, what=f"every {what} query to return data",
               detail=lambda: "\n".join(f"{name}: {expr}" for name, expr in missing.items()))


def test_every_rule_query_returns_data(monitored):
    queries = rule_queries()
    assert len(queries) >= 40
    wait_until_every_query_returns_data(monitored.prometheus, queries, "rule")


def test_every_dashboard_query_returns_data(monitored):
    queries = panel_queries()
    assert len(queries) >= 40
    wait_until_every_query_returns_data(monitored.prometheus, queries, "panel")


def test_every_dashboard_variable_has_values(monitored):
    for name, board in dashboards().items():
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
            assert match, f"{name}: variable {variable['name']} is not a label_values() query"
            selector = grafana_expr(match.group(1))
            reply = httpx.get(f"{monitored.prometheus}/api/v1/label/{match.group(2)}/values",
                              params={"match[]": selector}, timeout=10).json()
            assert reply["status"] == "success" and reply["data"], (name, variable["name"], reply)


def alert_states(prometheus: str) -> dict[tuple[str, str], str]:
    reply = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()
    return {(a["labels"]["alertname"], a["labels"].get("endpoint", "")): a["state"] for a in reply["data"]["alerts"]}


def test_the_failing_canary_and_the_dead_letters_raise_their_alerts(monitored):
    """The canary fails 20 % of its calls (fallback answers) and is 20 ms slower than `stable`;
    the stream got a poison event. Alerts with a `for` duration are pending first."""
    expected = {("FlightdeckCanaryErrorRateAboveBaseline", "credit"), ("FlightdeckCanaryLatencyAboveBaseline", "credit"),
                ("FlightdeckStreamDeadLetters", "stream")}
    states = eventually(lambda: (s := alert_states(monitored.prometheus)) and expected <= set(s) and s, 45, 1.0,
                        what=f"alerts {sorted(expected)}", detail=lambda: str(alert_states(monitored.prometheus)))
    assert states[("FlightdeckStreamDeadLetters", "stream")] == "firing"
    # The clean endpoint stays quiet.
    assert not [key for key in states if key[1] == "mirror"]
