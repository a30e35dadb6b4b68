"""What every exercise checker shares: a criterion, the context of the running system, answer files.

A checker looks at the real stores (the MLflow registry, the gateway database, partitions and
reports under FLIGHTDECK_HOME, the edge store, Redis) through the same functions the system uses,
and returns one `Criterion` per thing the exercise asks for. Nothing here changes any state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from flightdeck.config import Settings, get_settings


@dataclass(frozen=True)
class Criterion:
    """One thing an exercise asks for: met or missing, and what the checker found."""

    met: bool
    text: str
    found: str = ""


@dataclass(frozen=True)
class Exercise:
    number: int
    slug: str
    title: str
    pattern: str
    chapter: str  # docs/guide file name, e.g. "08-canary.md"
    check: Callable[[Context], list[Criterion]]

    @property
    def page(self) -> str:
        return f"docs/exercises/{self.number:02d}-{self.slug}.md"


class Context:
    """The running system as a checker sees it (built from the settings, read lazily)."""

    def __init__(self, settings: Settings | None = None, airflow_url: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.airflow_url = airflow_url.rstrip("/") if airflow_url else None

    def airflow_runs(self, dag_id: str) -> tuple[list[dict] | None, str]:
        """(the DAG's runs from Airflow's REST API, newest first; or None and why not). Only when
        the check was given an Airflow URL (`--airflow-url`)."""
        from flightdeck.devtools.airflow_api import AirflowRest

        if not self.airflow_url:
            return None, "no --airflow-url given"
        rest = AirflowRest(self.airflow_url)
        try:
            runs = rest.call("GET", f"/dags/{dag_id}/dagRuns",
                             params={"limit": 100, "order_by": "-logical_date"})["dag_runs"]
        except Exception as exc:  # noqa: BLE001 - an unreachable Airflow is a missing criterion
            return None, f"Airflow at {self.airflow_url} did not answer ({exc.__class__.__name__}: {exc})"
        finally:
            rest.close()
        return runs, f"{len(runs)} {dag_id} run(s) in Airflow"

    # ---- stores ----------------------------------------------------------------------------
    @cached_property
    def registry(self):
        from flightdeck.registry import Registry

        return Registry.from_settings(self.settings)

    @property
    def model(self) -> str:
        return self.settings.model_name

    def alias(self, name: str) -> str | None:
        """The version an alias of the settings' model points at, None when it does not exist."""
        try:
            return self.registry.aliases(self.model).get(name)
        except Exception:  # noqa: BLE001 - an unreachable or empty registry reads as "no alias"
            return None

    @cached_property
    def engine(self):
        from flightdeck.serving.db import engine_for

        return engine_for(self.settings.gateway_db_url)

    def gateway_db_exists(self) -> bool:
        url = self.settings.gateway_db_url
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///")).exists()
        return True

    def route_history(self, limit: int = 500) -> list:
        """Stored route-table versions, oldest first (empty when the gateway never ran)."""
        if not self.gateway_db_exists():
            return []
        from flightdeck.serving.store import RouteStore

        try:
            records = RouteStore(self.engine).history(limit)
        except Exception:  # noqa: BLE001 - no schema yet: the gateway was never started
            return []
        return list(reversed(records))

    def current_routes(self) -> tuple[int, dict]:
        """(version, document) of the route table in force; (0, {}) when none is stored."""
        history = self.route_history(1)
        if not history:
            return 0, {}
        return history[-1].version, history[-1].new_document

    def endpoint(self, name: str) -> tuple[int, dict | None]:
        version, document = self.current_routes()
        return version, (document.get("endpoints") or {}).get(name)

    def resolve_ref(self, variant: dict) -> str | None:
        """The version number a route-table variant serves now (an alias resolved in the registry)."""
        if variant.get("version") is not None:
            return str(variant["version"])
        alias = variant.get("alias")
        return self.alias(alias) if alias else None

    def first_route_version_with(self, endpoint: str, test: Callable[[dict], bool]) -> int | None:
        """The oldest stored route version in which `endpoint` exists and passes `test`."""
        for record in self.route_history():
            spec = (record.new_document.get("endpoints") or {}).get(endpoint)
            if spec is not None and test(spec):
                return record.version
        return None

    def predictions_log(self, endpoint: str, columns: list[str], role: str | None = "live"):
        """Prediction-log rows of an endpoint (an empty frame when there is no gateway database)."""
        import pandas as pd

        if not self.gateway_db_exists():
            return pd.DataFrame(columns=columns)
        from flightdeck.serving.predlog_reads import read_predictions

        try:
            return read_predictions(self.engine, endpoint, columns, role=role)
        except Exception:  # noqa: BLE001 - no schema yet
            return pd.DataFrame(columns=columns)

    def predictions_log_all(self, columns: list[str]):
        """Live prediction-log rows of every endpoint (columns of the `predictions` table)."""
        import pandas as pd
        import sqlalchemy as sa

        if not self.gateway_db_exists():
            return pd.DataFrame(columns=columns)
        from flightdeck.serving.db import predictions

        query = sa.select(*[predictions.c[c] for c in columns]).where(predictions.c.role == "live")
        try:
            with self.engine.connect() as conn:
                return pd.DataFrame(conn.execute(query).all(), columns=columns)
        except Exception:  # noqa: BLE001 - no schema yet
            return pd.DataFrame(columns=columns)

    # ---- answer files ------------------------------------------------------------------------
    @property
    def exercises_dir(self) -> Path:
        return self.settings.home / "exercises"

    def answer_path(self, number: int) -> Path:
        return self.exercises_dir / f"{number:02d}.yaml"

    def answers(self, number: int) -> tuple[dict | None, str]:
        """(the learner's answer file as a mapping, or None; a sentence on what was found)."""
        path = self.answer_path(number)
        if not path.exists():
            return None, f"no answer file {path}"
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            return None, f"{path} is not readable YAML ({exc.__class__.__name__}: {exc})"
        if not isinstance(data, dict):
            return None, f"{path} should hold `key: value` lines, found {type(data).__name__}"
        return data, f"read {path}"


def number(value: Any) -> float | None:
    """A finite float from an answer, None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def close(value: Any, expected: float, rel: float = 0.01, abs_tol: float = 0.0) -> bool:
    got = number(value)
    return got is not None and math.isclose(got, expected, rel_tol=rel, abs_tol=abs_tol)


def answer_file_criterion(ctx: Context, number_: int, keys: list[str]) -> tuple[Criterion, dict | None]:
    """The criterion "the answer file exists and names `keys`", and its content."""
    data, found = ctx.answers(number_)
    text = f"the answer file exercises/{number_:02d}.yaml under FLIGHTDECK_HOME gives {', '.join(keys)}"
    if data is None:
        return Criterion(False, text, found), None
    missing = [k for k in keys if k not in data]
    if missing:
        return Criterion(False, text, f"it lacks {', '.join(missing)}"), None
    return Criterion(True, text, found), data


def needs(previous: Criterion, text: str) -> Criterion:
    """A criterion that cannot be checked because an earlier one is missing."""
    return Criterion(False, text, f"not checked: first meet \"{previous.text}\"")
