"""A world for promotion tests: a real MLflow registry with three versions, a real gateway (uvicorn
workers on PostgreSQL) scraped by a real Prometheus, a steady load, and labelled traffic in the
prediction log. The packages that use it (tests/e2e, tests/integration/release) build one each
with `package_world`, so it is stopped when their last test ends, not left idle (its gateway
polling, Prometheus scraping it) while the same pytest-xdist worker runs other modules.

Versions: 1 = champion (seed 1), 2 = a good challenger (seed 2), 3 = a challenger whose scores
are shifted upwards (trained with the positives repeated), for the score-distribution gate.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import onnx
import pandas as pd

from flightdeck.config import Settings
from flightdeck.data.generator import generate_partition
from flightdeck.data.schema import LABEL
from flightdeck.delivery.release import AUDIT_TAG
from flightdeck.devtools.load import Load
from flightdeck.serving.client import GatewayClient
from tests.support.gateway import TOKEN, gateway_process
from tests.support.models import FEATURES, MODEL, onnx_model
from tests.support.prometheus import prometheus_server

CHAMPION_ROUTES = {"endpoints": {"default": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}


@cache
def labelled_rows(n: int = 4000, seed: int = 21) -> pd.DataFrame:
    frame = generate_partition("2026-02-10", rows=n * 2, seed=seed)[[*FEATURES, LABEL]].dropna()
    return frame.head(n).reset_index(drop=True)


@cache
def shifted_model() -> bytes:
    """A model whose scores sit well above the champion's: the positives count six times."""
    from flightdeck.training.export import to_onnx
    from flightdeck.training.train import fit_pipeline

    train = generate_partition("2026-01-15", rows=2000, seed=3).dropna()
    train = pd.concat([train] + [train[train[LABEL] == 1]] * 5, ignore_index=True)
    return to_onnx(fit_pipeline(train, "logistic_regression", seed=3), MODEL).SerializeToString()


def register_versions(home: Path) -> None:
    from flightdeck.registry import Registry

    registry = Registry.from_settings(Settings(home=home))
    example = pd.DataFrame(labelled_rows()[FEATURES].head(2))
    for key, model in (("1", onnx_model(1)), ("2", onnx_model(2)), ("3", shifted_model())):
        run_id = registry.log_run(f"release-test-{key}", {"model": key}, {"onnx_parity_max_abs_diff": 0.0}, {},
                                  run_name=f"release-{key}")
        uri = registry.log_onnx_model(run_id, onnx.load_from_string(model), example, [0.5, 0.5])
        registry.register(MODEL, uri, run_id, training_key=f"release-test-{key}")


@dataclass
class ReleaseWorld:
    home: Path
    database_url: str
    base_url: str
    prometheus_url: str | None = None  # a real Prometheus scraping the gateway every second

    def client(self) -> GatewayClient:
        return GatewayClient(self.base_url, TOKEN)

    def registry(self):
        from flightdeck.registry import Registry

        return Registry.from_settings(Settings(home=self.home))

    @property
    def env(self) -> dict:
        """What Airflow tasks need to reach this world."""
        host = self.base_url.removeprefix("http://")
        return {"FLIGHTDECK_HOME": str(self.home), "FLIGHTDECK_GATEWAY_DATABASE_URL": self.database_url,
                "AIRFLOW_CONN_FLIGHTDECK_GATEWAY": f"http://:{TOKEN}@{host}"}

    def reset(self, candidate: str) -> None:
        """Champion v1, challenger `candidate`, the endpoint serving the champion alone, and no
        release audit left on the versions by earlier tests (the world is shared by a session)."""
        registry = self.registry()
        for version in ("1", "2", "3"):
            for key in registry.client.get_model_version(MODEL, version).tags:
                if key.startswith(f"{AUDIT_TAG}."):
                    registry.client.delete_model_version_tag(MODEL, version, key)
        registry.client.set_registered_model_alias(MODEL, "champion", "1")
        registry.client.set_registered_model_alias(MODEL, "challenger", candidate)
        if "previous" in registry.aliases(MODEL):
            registry.client.delete_registered_model_alias(MODEL, "previous")
        with self.client() as client:
            client.replace_routes(CHAMPION_ROUTES, comment="test reset")
        self.analyze()

    def analyze(self) -> None:
        """Fresh planner statistics for the prediction log. The world's database is new and the
        log grows by thousands of rows a minute under `load()`, faster than autovacuum analyses
        it; with statistics saying "a few hundred rows" PostgreSQL joined each logged row to the
        outcomes' window subqueries in a nested loop, and a backtest's replay of a 40,000-row log
        took two minutes instead of well under a second."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("ANALYZE predictions"))
                conn.execute(sa.text("ANALYZE outcomes"))
        finally:
            engine.dispose()

    def log_labelled_traffic(self, n: int = 600) -> None:
        """Score `n` labelled rows through the gateway and record their outcomes (for the backtest)."""
        rows = labelled_rows()
        with self.client() as client:
            outcomes = []
            for start in range(0, n, 50):
                chunk = rows.iloc[start:start + 50]
                for record, label in zip(chunk[FEATURES].to_dict(orient="records"), chunk[LABEL], strict=True):
                    answer = client.invocations([record])
                    outcomes.append({"request_id": answer["request_id"], "label": float(label)})
            client.record_outcomes(outcomes)

    @contextmanager
    def load(self, rate: float = 250):
        load = Load(self.base_url, labelled_rows()[FEATURES].to_dict(orient="records"), rate).start()
        try:
            yield load
        finally:
            load.stop()


@contextmanager
def package_world(tmp_path_factory, postgres_admin):
    """A world on a registry and a gateway database of its own (dropped afterwards), scraped by
    Prometheus, for a package fixture; each test calls `reset()` first."""
    from tests.support.services import new_database

    home = tmp_path_factory.mktemp("release-world")
    register_versions(home)
    with new_database(postgres_admin) as url, \
            gateway_process(home, url, CHAMPION_ROUTES, workers=2) as (base_url, _), \
            prometheus_server([base_url.removeprefix("http://")]) as prom:
        world = ReleaseWorld(home, url, base_url, prom)
        world.log_labelled_traffic()
        world.analyze()
        yield world
