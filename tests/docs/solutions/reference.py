"""Reference solutions of the twenty exercises, cheap enough for the test suite.

They drive the same domain functions and stores a learner reaches through the CLI, the admin API
and the DAGs: batch stages on an in-process Dask client, the gateway application in process
(Starlette's TestClient runs its lifespan: route polling, the prediction log, running sums),
experiment and shadow analysis, the edge publisher, the stream scorer on Redis. No Airflow
scheduler, no long bakes. Every function expects FLIGHTDECK_HOME to be the home it solves in and
`get_settings()` to read it.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import yaml

TOKEN = "exercises-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = "2026-01-21"


def settings():
    from flightdeck.config import get_settings

    return get_settings()


def registry():
    from flightdeck.registry import Registry

    return Registry.from_settings(settings())


def answer(number: int, data: dict) -> None:
    folder = settings().home / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{number:02d}.yaml").write_text(yaml.safe_dump(data))


def raw_records(ds: str, n: int, offset: int = 0) -> tuple[list[str], list[dict]]:
    from flightdeck.data.partitions import read_partition
    from flightdeck.data.schema import ENTITY_ID, FEATURES

    frame = read_partition(settings().raw_dir, ds).iloc[offset:offset + n]
    return frame[ENTITY_ID].astype(str).tolist(), frame[list(FEATURES)].to_dict(orient="records")


# ---- 01 ----------------------------------------------------------------------------------------
def solve_01() -> None:
    from flightdeck.data.partitions import list_partitions

    reg, name = registry(), settings().model_name
    aliases = reg.aliases(name)
    run = reg.client.get_run(reg.get_version(name, "champion").run_id)
    answer(1, {"champion": int(aliases["champion"]), "challenger": int(aliases["challenger"]),
               "raw_days": len(list_partitions(settings().raw_dir)),
               "champion_auc": round(run.data.metrics["holdout_roc_auc"], 4)})


# ---- 02, 03: batch stages on an in-process Dask client --------------------------------------------
@contextmanager
def dask():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        yield client


def _validation(ds: str) -> dict:
    """What batch_score's `validate_input` hands on for a clean day (the guide's data is clean):
    every raw file, no row excluded. Great Expectations itself is left out: it costs seconds a day."""
    import pyarrow.parquet as pq

    from flightdeck.data.layout import data_files, partition_path

    files = data_files(partition_path(settings().raw_dir, date.fromisoformat(ds)))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {"files": [str(f) for f in files], "exclude_rows": {}, "bad_rows": 0, "valid_rows": rows}


def _score_day(client, ds: str, ref: str, run_id: str, monitor: bool) -> None:
    from flightdeck.batch import pipeline
    from flightdeck.batch.scoring import ModelArtifact, ScoringJob, score_partition

    reg, config = registry(), settings()
    resolved = reg.resolve(config.model_name, ref)
    model = {"name": resolved.name, "version": resolved.version, "run_id": resolved.run_id}
    validation = _validation(ds)
    version, onnx_bytes = reg.download_onnx(model["name"], model["version"])
    job = ScoringJob(ds=ds, input_files=[Path(f) for f in validation["files"]], output_root=config.predictions_dir,
                     model=ModelArtifact(model["name"], version, onnx_bytes), run_id=run_id,
                     scored_at=datetime.now(UTC), threshold=config.decision_threshold,
                     exclude_rows=validation["exclude_rows"])
    result = score_partition(client, job)
    pipeline.check_output(ds, model, validation)
    if monitor:
        pipeline.monitor(ds, model, validation, {"rows_per_second": result.rows_per_second}, run_id, reg)


def solve_02_03() -> None:
    with dask() as client:
        _score_day(client, DAY, "champion", "manual__exercise-02", monitor=True)
        for ds in ("2026-01-05", "2026-01-06", "2026-01-07"):
            _score_day(client, ds, "2", f"backfill__{ds}", monitor=False)


# ---- the gateway in process: route tables (04, 09-13, 15-17, 20) and traffic ----------------------
ENDPOINTS = {
    "default": {"policy": "single", "variants": {"champion": {"alias": "champion"}}},
    "credit-v2": {"policy": "single", "variants": {"v2": {"version": "2"}}},
    "bg": {"policy": "blue_green", "active": "blue", "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}},
    "bg-drill": {"policy": "blue_green", "active": "blue",
                 "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}},
    "canary-lab": {"policy": "canary", "weights": {"stable": 90, "canary": 10},
                   "variants": {"stable": {"alias": "champion"}, "canary": {"alias": "challenger"}}},
    "canary-drill": {"policy": "canary", "weights": {"stable": 50, "canary": 50},
                     "variants": {"stable": {"version": "1"},
                                  "canary": {"version": "2", "faults": {"latency_ms": 20}}}},
    "by-age": {"policy": "conditional", "default": "champion",
               "conditions": [{"feature": "age", "op": "<", "value": 30, "variant": "young"}],
               "variants": {"champion": {"alias": "champion"}, "young": {"alias": "challenger"}}},
    "ensemble-safe": {"policy": "ensemble", "ensemble": {"method": "mean", "members": ["one", "two"]},
                      "fallback": {"variant": "safe", "latency_budget_ms": 80},
                      "variants": {"one": {"version": "1"}, "two": {"version": "2"}, "safe": {"alias": "champion"}}},
    "shadow-lab": {"policy": "single", "shadow": {"variant": "challenger", "percent": 100},
                   "variants": {"champion": {"alias": "champion"}, "challenger": {"alias": "challenger"}}},
    "aa": {"policy": "ab", "salt": "aa-2026", "weights": {"a": 70, "b": 30},
           "variants": {"a": {"version": "1"}, "b": {"version": "1"}}},
    "ship-ab": {"policy": "ab", "salt": "ship-2026", "weights": {"control": 50, "treatment": 50},
                "variants": {"control": {"alias": "champion"}, "treatment": {"alias": "challenger"}}},
}


def route_store():
    from flightdeck.serving import db
    from flightdeck.serving.store import RouteStore

    db.upgrade(settings().gateway_db_url)
    return RouteStore(db.engine_for(settings().gateway_db_url))


def edit_endpoint(name: str, spec: dict, comment: str | None = None) -> None:
    store = route_store()
    current = store.current()
    document = json.loads(json.dumps(current.document)) if current else {"endpoints": {}}
    document["endpoints"][name] = spec
    store.replace(document, author="learner", comment=comment)


@contextmanager
def gateway():
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from flightdeck.serving.app import create_app
    from flightdeck.serving.gateway import Gateway
    from flightdeck.serving.models import ModelPool

    config = settings().model_copy(update={
        "admin_tokens": {"learner": SecretStr(TOKEN)}, "grpc_port": 0, "route_poll_seconds": 0.05,
        "stats_flush_seconds": 0.05, "predlog_flush_seconds": 0.05, "cache_backend": "off"})
    with TestClient(create_app(config, Gateway(config, ModelPool(registry())))) as client:
        yield client


def score(client, endpoint: str, rows: list[dict], unit: str | None = None) -> dict:
    headers = {"X-Unit-Id": unit} if unit else {}
    response = client.post(f"/endpoints/{endpoint}/invocations", json={"dataframe_records": rows}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


_T = [0.0]


def _mark(what: str) -> None:
    import time

    now = time.monotonic()
    if os.environ.get("FD_EXERCISE_TIMING"):
        print(f"  {what}: {now - _T[0]:.2f} s", flush=True)
    _T[0] = now


def solve_gateway() -> None:
    """Exercises 4, 9-13, 15-18 and 20: route tables, traffic, switches, the drill and its rollback."""
    store = route_store()
    store.replace({"endpoints": ENDPOINTS, "default_endpoint": "default"}, author="learner",
                  comment="exercise endpoints")
    _, rows = raw_records(DAY, 300)
    ids18, rows18 = raw_records(DAY, 5, offset=100)
    with gateway() as client, ThreadPoolExecutor(8) as pool:
        _mark("gateway up")
        score(client, "credit-v2", rows[:20])                                                  # 04
        list(pool.map(lambda i: score(client, "canary-lab", [rows[i]]), range(300)))            # 12
        list(pool.map(lambda i: score(client, "canary-drill", [rows[i]]), range(160)))          # 11
        for i in range(4):                                                                     # 15
            score(client, "shadow-lab", rows[60 * i:60 * i + 60])
        list(pool.map(lambda i: score(client, "aa", [rows[i]], unit=f"customer-{i}"), range(200)))  # 13
        score(client, "ensemble-safe", rows[:10])                                              # 17
        scores18 = score(client, "default", rows18)["predictions"]                             # 18
        # 09: the cut-over, one field. 10: there and back again, with a reason.
        edit_endpoint("bg", {**ENDPOINTS["bg"], "active": "green"}, comment="cut over to green")
        edit_endpoint("bg-drill", {**ENDPOINTS["bg-drill"], "active": "green"}, comment="drill: cut over")
        edit_endpoint("bg-drill", {**ENDPOINTS["bg-drill"], "active": "blue"}, comment="rollback drill: back to blue")
        _mark("traffic sent")
        _drill_gate_and_rollback(client)
        _mark("drill done")
    answer(18, {"day": DAY, "customer_ids": ids18, "gateway_scores": [float(s) for s in scores18]})
    _canary_share()


def _drill_gate_and_rollback(client) -> None:
    """11: what promote_canary's gate and rollback do: read the windows, fail, send traffic back, audit."""
    import time

    from flightdeck.delivery import release
    from flightdeck.delivery.plan import RolloutPlan
    from flightdeck.delivery.policy import ReleasePolicy
    from flightdeck.guide.checks.base import Context
    from flightdeck.guide.checks.serving import _windows

    policy = ReleasePolicy(allow_drill_faults=True)
    plan = RolloutPlan.parse({"strategy": "canary", "model_name": settings().model_name, "model_ref": "challenger",
                              "endpoint": "canary-drill", "drill_faults": {"latency_ms": 20}}, policy)
    rollout = release.resolve(plan, registry())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the running sums reach the database every stats flush
        windows = _windows(Context(), "canary-drill", 1)
        if sum(w.requests for _, w in windows.values()) >= 160:
            break
        time.sleep(0.05)
    edit_endpoint("canary-drill", {**ENDPOINTS["canary-drill"], "weights": {"stable": 100, "canary": 0}},
                  comment="rollback: latency gate failed")
    release.audit(rollout, registry(), "manual__exercise-11", "rolled_back", "step 1 latency gate failed")


def _canary_share() -> None:
    from flightdeck.guide.checks.base import Context
    from flightdeck.guide.checks.serving import _windows

    windows = _windows(Context(), "canary-lab", 1)
    total = sum(w.requests for _, w in windows.values())
    share = sum(w.requests for v, w in windows.values() if v == "2") / total
    answer(12, {"canary_share": round(share, 4)})


# ---- 13 and 15: the analyses of what the gateway logged -------------------------------------------
def solve_13() -> None:
    from flightdeck.experiments.runs import analyse_day

    folder = settings().home / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    today = date.today()
    (folder / "aa.yaml").write_text(yaml.safe_dump({
        "name": "aa-check", "endpoint": "aa", "unit": "unit_id",
        "variants": {"a": {"version": "1", "weight": 0.5}, "b": {"version": "1", "weight": 0.5}},
        "control": "a", "primary_metric": "log_loss", "minimum_detectable_effect": 0.03,
        "start_date": today.isoformat(), "max_duration_days": 14, "policy": "fixed"}))
    result = analyse_day(str(folder / "aa.yaml"), today)
    srm = result["srm"]
    over = max(srm["observed_share"], key=lambda k: srm["observed_share"][k] - 0.5)
    answer(13, {"srm_p_value": srm["p_value"], "overrepresented_variant": over,
                "route_weights": ENDPOINTS["aa"]["weights"]})


def solve_15() -> None:
    from flightdeck.experiments.runs import day_window, evaluate_shadow_window

    start, end = day_window(date.today())
    result = evaluate_shadow_window("shadow-lab", start, end)
    report = json.loads((Path(result["report"]).parent / "report.json").read_text())
    answer(15, {"agreement": report["agreement"]["estimate"], "recommendation": report["recommendation"],
                "most_disagreeing_feature": report["segments"][0]["feature"]})


# ---- 06, 07 edge ----------------------------------------------------------------------------------
def solve_06_07() -> None:
    from flightdeck import runtime
    from flightdeck.edge.bundle import build_manifest, in_cohort, publish
    from flightdeck.edge.export import SELF_TEST_TOLERANCE
    from flightdeck.edge.keys import default_signing_key
    from flightdeck.edge.store import open_store

    config = settings()
    version, onnx_bytes = registry().download_onnx(config.model_name, "challenger")
    _, rows = raw_records(DAY, 20)
    golden_scores = runtime.score(runtime.load_session(onnx_bytes), pd.DataFrame(rows))
    golden = json.dumps({"columns": {k: [r[k] for r in rows] for k in rows[0]},
                         "scores": [float(s) for s in golden_scores]}).encode()
    files = {"model.onnx": onnx_bytes, "golden.json": golden}
    manifest = build_manifest(model_name=config.model_name, model_version=version, fmt="onnx_float", files=files,
                              rollout_percent=10, min_agent_version="1.0.0",
                              self_test_tolerance=SELF_TEST_TOLERANCE["onnx_float"], source={})
    published = publish(open_store(config.home / "edge" / "store"), manifest, files,
                        default_signing_key(config.home), "beta")
    devices = [f"device-{i}" for i in range(200)]
    inside = [d for d in devices if in_cohort(d, published.bundle_id, 10)][:3]
    outside = [d for d in devices if not in_cohort(d, published.bundle_id, 10)][:3]
    answer(7, {"in_cohort": inside, "not_in_cohort": outside})


# ---- 08, 14, 19, 20: numbers and files --------------------------------------------------------------
def solve_08() -> None:
    from flightdeck.serverless.cost import Workload, break_even, container_monthly, lambda_monthly

    work = Workload(latency_ms=12, lambda_memory_mb=512, container_vcpu=0.25, container_memory_gb=0.5,
                    min_replicas=2)
    even = break_even(work)
    cheaper = "lambda" if lambda_monthly(3, work) < container_monthly(3, work) else "container"
    answer(8, {"latency_ms": 12, "memory_mb": 512, "traffic_rps": 3,
               "break_even_rps": None if even is None else round(even, 3), "cheaper": cheaper})


def solve_14() -> None:
    from flightdeck.data.partitions import read_window
    from flightdeck.experiments.design import sample_size_proportions

    baseline = round(float(read_window(settings().raw_dir, "2026-01-01", DAY)["label"].mean()), 3)
    answer(14, {"baseline": baseline, "units_per_arm": sample_size_proportions(baseline, 0.02),
                "units_per_arm_sequential": sample_size_proportions(baseline, 0.02, sequential=True)})


def solve_19() -> None:
    policy = yaml.safe_load(Path("include/config/release_policy.yaml").read_text())
    policy.update(allow_drill_faults=True)
    policy["gates"]["latency_margin_ms"] = 10
    folder = settings().home / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "release_policy.yaml").write_text(yaml.safe_dump(policy))


def solve_20() -> None:
    folder = settings().home / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ship.yaml").write_text(yaml.safe_dump({
        "name": "ship-it", "endpoint": "ship-ab", "unit": "unit_id",
        "variants": {"control": {"alias": "champion", "weight": 0.5},
                     "treatment": {"alias": "challenger", "weight": 0.5}},
        "control": "control", "primary_metric": "log_loss", "minimum_detectable_effect": 0.03,
        "start_date": date.today().isoformat(), "max_duration_days": 28, "policy": "sequential",
        "promotion": {"endpoint": "default", "steps": [10, 50]}}))


# ---- 05 streaming ---------------------------------------------------------------------------------
def solve_05(redis_url: str, prefix: str) -> None:
    from flightdeck.streaming.producer import produce_generated
    from flightdeck.streaming.redis_streams import connect
    from flightdeck.streaming.service import StreamOptions, build_scorer

    names = {"input": f"{prefix}:events", "output": f"{prefix}:scores", "dead_letter": f"{prefix}:dead"}
    produce_generated(redis_url, names["input"], 500)
    client = connect(redis_url)
    for broken in (b"not json", b'{"event_id": "x"}', b'{"event_id": "y", "customer_id": "c", "age": "old"}'):
        client.xadd(names["input"], {"data": broken})
    scorer = build_scorer(StreamOptions(redis_url=redis_url, input=names["input"], output=names["output"],
                                        dead_letter=names["dead_letter"], alerts=None, consumer=prefix))
    stats = scorer.run(max_records=503, idle_stop_s=1.0)
    assert stats.records == 503 and not math.isnan(stats.records)
    answer(5, {**names, "redis_url": redis_url})
