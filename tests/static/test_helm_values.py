"""deploy/helm/airflow-values.yaml (values for Apache Airflow's official chart): rules the chart's own
schema cannot express. Airflow's pods reach the gateway's database (the prediction log that preflight,
backtest and the experiment analyses read, and the release lock) through a URL held in a Secret, never
written in the values; every flightdeck setting they name is one flightdeck reads. Each rule is also
run on a broken copy of the values to prove that it can fail."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from flightdeck.config import Settings
from tests.support.documents import walk_strings

ROOT = Path(__file__).resolve().parents[2]
VALUES_FILE = ROOT / "deploy" / "helm" / "airflow-values.yaml"
GATEWAY_DB = "FLIGHTDECK_GATEWAY_DATABASE_URL"
URI_PASSWORD = re.compile(r"://[^/:@\s]+:([^@\s]+)@")
PREFIX = Settings.model_config["env_prefix"]


def load_values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


def gateway_database_from_a_secret(values: dict) -> list[str]:
    """The gateway's database URL (with its role's password) reaches every Airflow pod from a
    Secret (`secret`, which the chart puts in every Airflow container and in the KubernetesExecutor's
    pod template), and is not also given as a plain value that would win or leak."""
    problems = []
    secrets = [entry for entry in values.get("secret", []) if entry.get("envName") == GATEWAY_DB]
    if len(secrets) != 1:
        problems.append(f"{GATEWAY_DB} is not taken from exactly one Secret (found {len(secrets)})")
    for entry in secrets:
        if not entry.get("secretName") or not entry.get("secretKey"):
            problems.append(f"{GATEWAY_DB}: the Secret entry names no secretName and secretKey: {entry}")
    plain = [entry for entry in values.get("env", []) if entry.get("name") == GATEWAY_DB]
    if plain or GATEWAY_DB in str(values.get("extraEnv", "")):
        problems.append(f"{GATEWAY_DB} is also set as a plain value")
    return problems


def no_password_in_the_values(values: dict) -> list[str]:
    return [f"a password is written in the values: {text!r}"
            for text in walk_strings(values) if URI_PASSWORD.search(text)]


def settings_exist(values: dict) -> list[str]:
    """Every FLIGHTDECK_* variable the values set names a setting (a typo would be ignored)."""
    names = [e.get("name") for e in values.get("env", [])] + [e.get("envName") for e in values.get("secret", [])]
    known = {PREFIX + field.upper() for field in Settings.model_fields}
    return [f"{name} is not a flightdeck setting" for name in names
            if name and name.startswith(PREFIX) and name not in known]


RULES: list[Callable[[dict], list[str]]] = [
    gateway_database_from_a_secret,
    no_password_in_the_values,
    settings_exist,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_values_rule_holds(rule):
    assert rule(load_values()) == []


def _break(values: dict, rule_name: str) -> None:
    if rule_name == "gateway_database_from_a_secret":
        values["secret"] = [e for e in values["secret"] if e["envName"] != GATEWAY_DB]
    elif rule_name == "no_password_in_the_values":
        values["env"].append({"name": GATEWAY_DB, "value": "postgresql+psycopg2://releases:hunter2@db:5432/gateway"})
    elif rule_name == "settings_exist":
        values["env"].append({"name": "FLIGHTDECK_GATEWAY_DATABASE_URI", "value": "x"})
    else:
        raise AssertionError(f"no breakage written for {rule_name}")


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_values_rule_catches_broken_values(rule):
    broken = copy.deepcopy(load_values())
    _break(broken, rule.__name__)
    assert rule(broken), f"{rule.__name__} accepted broken values"


def test_a_gateway_database_url_given_as_a_plain_value_as_well_is_reported():
    broken = load_values()
    broken["env"].append({"name": GATEWAY_DB, "value": "sqlite:////opt/flightdeck/gateway/gateway.db"})
    assert gateway_database_from_a_secret(broken) == [f"{GATEWAY_DB} is also set as a plain value"]
