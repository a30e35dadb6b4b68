"""One artifact, every surface: the same 1,000 rows of one day get the same score everywhere.

A version is trained and registered once (the train_register stages, in process), then the
day's partition is scored by the champion through every way flightdeck serves it:
batch scoring on Dask, the gateway over real HTTP on loopback (MLflow `/invocations`, OIP v2
REST and gRPC, the WebSocket), the stream scorer on a real Redis stream, the packaged Lambda
handler in a fresh interpreter (HTTP API event and direct invoke), the edge agent on a signed
`onnx_float` bundle it installs from a folder store, `mlflow.pyfunc` loaded from
`models:/<name>@champion`, and a real `mlflow models serve` process on that URI (`dataframe_split`
and `dataframe_records`): MLflow's own tools score the version as the DAG registers it. Each surface gets the rows in its own shuffled order and its scores
are joined back by `customer_id`, so a surface that mixed rows up cannot pass by position.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flightdeck.data.schema import ENTITY_ID, EVENT_TIME, FEATURES, LABEL
from tests.integration.edge.world import MODEL, register_version
from tests.support.services import redis_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAY = "2026-02-02"  # after the training window: rows the model has never seen
ROWS = 1000
TOLERANCE = 1e-9  # absolute, on every row, for every pair of surfaces
SURFACES = ("batch", "gateway /invocations", "gateway OIP v2 REST", "gateway OIP v2 gRPC", "gateway WebSocket",
            "stream scorer", "Lambda HTTP API event", "Lambda direct invoke", "edge agent (onnx_float)",
            "mlflow.pyfunc", "mlflow models serve (dataframe_split)", "mlflow models serve (dataframe_records)")
ROUTES = {"endpoints": {"credit": {"policy": "single", "variants": {"champion": {"alias": "champion"}}}}}


@dataclass
class World:
    home: Path
    version: str
    frame: pd.DataFrame  # the day's rows: ENTITY_ID, EVENT_TIME, the features and LABEL
    model_bytes: bytes

    def records(self, seed: int) -> tuple[list[str], list[dict]]:
        """(ids, feature records) in an order of their own: positions differ from surface to surface."""
        shuffled = self.frame.sample(frac=1.0, random_state=seed)
        return shuffled[ENTITY_ID].tolist(), shuffled[list(FEATURES)].to_dict(orient="records")


def by_id(ids: list[str], scores) -> pd.Series:
    series = pd.Series(np.asarray(scores, dtype=np.float64), index=pd.Index(ids, name=ENTITY_ID))
    assert series.index.is_unique and len(series) == len(ids)
    return series


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registered champion and a raw partition of exactly ROWS rows for DAY; its settings stay in
    force (FLIGHTDECK_HOME, one Dask worker) until the module ends."""
    from flightdeck.config import get_settings
    from flightdeck.data.generator import write_partitions
    from flightdeck.data.partitions import read_partition
    from flightdeck.registry import Registry

    home = tmp_path_factory.mktemp("parity") / "flightdeck"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLIGHTDECK_HOME", str(home))
        patch.setenv("FLIGHTDECK_DASK_WORKERS", "1")
        patch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")  # see docs/ARCHITECTURE.md, pitfalls
        get_settings.cache_clear()
        try:
            version = register_version(home.resolve())
            settings = get_settings()
            write_partitions(settings.raw_dir, DAY, DAY, rows_per_day=ROWS, seed=5)
            frame = read_partition(settings.raw_dir, DAY)[[ENTITY_ID, EVENT_TIME, *FEATURES, LABEL]]
            assert len(frame) == ROWS and frame[ENTITY_ID].is_unique and not frame.isna().any().any()
            _, model_bytes = Registry.from_settings(settings).download_onnx(MODEL, "champion")
            yield World(home.resolve(), version, frame.reset_index(drop=True), model_bytes)
        finally:
            get_settings.cache_clear()


# ---- the surfaces: each returns {surface name: scores indexed by customer_id} ----------------------

def batch_scores(world: World) -> dict[str, pd.Series]:
    """batch_score's stages: validate + quarantine, resolve the champion, score on Dask, read the partition."""
    from datetime import UTC, datetime

    from flightdeck.batch import pipeline
    from flightdeck.config import get_settings
    from flightdeck.data.partitions import read_partition
    from flightdeck.registry import Registry

    registry = Registry.from_settings()
    validation = pipeline.validate(DAY)
    assert validation["valid_rows"] == ROWS
    champion = registry.get_version(MODEL, "champion")  # pinned once, as the DAG's first task does
    model = {"name": MODEL, "version": str(champion.version), "run_id": champion.run_id}
    pipeline.score(DAY, model, validation, "parity", datetime(2026, 2, 3, tzinfo=UTC), registry)
    predictions = read_partition(get_settings().predictions_dir, DAY)
    assert set(predictions["model_version"]) == {world.version}
    return {"batch": by_id(predictions[ENTITY_ID].tolist(), predictions["score"])}


def gateway_scores(world: World) -> dict[str, pd.Series]:
    """`flightdeck serve` on loopback, every protocol it speaks."""
    from websockets.sync.client import connect

    from flightdeck.serving.client import GatewayClient, grpc_infer
    from tests.support.gateway import gateway_process

    out = {}
    with gateway_process(world.home, f"sqlite:///{world.home / 'gateway.db'}", ROUTES, workers=1,
                         FLIGHTDECK_CACHE_BACKEND="off") as (base, grpc_port), GatewayClient(base) as client:
        ids, records = world.records(seed=1)
        answer = client.invocations(records, endpoint="credit")
        assert answer["model_version"] == world.version
        out["gateway /invocations"] = by_id(ids, answer["predictions"])

        ids, records = world.records(seed=2)
        answer = client.infer("credit", records)
        assert answer["model_version"] == world.version
        out["gateway OIP v2 REST"] = by_id(ids, answer["outputs"][0]["data"])

        ids, records = world.records(seed=3)
        reply = grpc_infer(f"127.0.0.1:{grpc_port}", "credit", records, client.metadata("credit")["inputs"])
        assert reply.model_version == world.version
        out["gateway OIP v2 gRPC"] = by_id(ids, reply.outputs[0].contents.fp64_contents)

        ids, records = world.records(seed=4)
        with connect(f"{base.replace('http://', 'ws://')}/stream/credit", max_size=2**24) as socket:
            socket.send(json.dumps({"id": "parity", "rows": records}))
            answer = json.loads(socket.recv(timeout=60))
        assert answer["id"] == "parity" and answer["model_version"] == world.version, answer
        out["gateway WebSocket"] = by_id(ids, answer["predictions"])
    return out


def stream_scores(world: World) -> dict[str, pd.Series]:
    """The stream scorer over a real Redis stream of its own, the champion resolved from the registry."""
    from flightdeck.registry import Registry
    from flightdeck.streaming.broker import Backend
    from flightdeck.streaming.models import ModelRouter
    from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
    from flightdeck.streaming.scorer import ScorerConfig, StreamScorer

    client = redis_client()
    prefix = f"fdparity-{uuid.uuid4().hex[:10]}"
    try:
        shuffled = world.frame.sample(frac=1.0, random_state=5)
        pipe = client.pipeline(transaction=False)
        for i, row in enumerate(shuffled.to_dict(orient="records")):
            event = {**{k: row[k] for k in FEATURES}, ENTITY_ID: row[ENTITY_ID],
                     EVENT_TIME: row[EVENT_TIME].isoformat(), "event_id": f"e{i}"}
            pipe.xadd(f"{prefix}:in", {"data": json.dumps(event)})
        pipe.execute()
        sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
        scorer = StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                              ModelRouter(Registry.from_settings(), MODEL), [], ScorerConfig(batch_size=256))
        stats = scorer.run(idle_stop_s=0.3)
        assert (stats.scored, stats.dead_letters) == (ROWS, 0)
        results = [json.loads(fields[b"data"]) for _, fields in client.xrange(f"{prefix}:out")]
    finally:
        keys = list(client.scan_iter(f"{prefix}*")) + list(client.scan_iter(f"flightdeck:stream:{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert {r["model_version"] for r in results} == {world.version}
    return {"stream scorer": by_id([r["entity_id"] for r in results], [r["score"] for r in results])}


def lambda_scores(world: World, wheel_cache: Path) -> dict[str, pd.Series]:
    """The Lambda zip of the champion, its handler run in a fresh `python -I -S` on the unzipped package."""
    from flightdeck.registry import Registry
    from flightdeck.serverless.package import extract, package_registered_model
    from flightdeck.serverless.verify import http_event, run_probe, split_body

    built = package_registered_model(Registry.from_settings(), MODEL, "champion", world.home / "lambda",
                                     wheel_cache=wheel_cache)
    assert built.model_version == world.version
    ids, records = world.records(seed=6)
    first = records[0]
    events = {"v2": http_event(split_body(records)), "direct": {"dataframe_records": records},
              "direct_one": {"dataframe_records": records[:1]}, "bad": http_event("{not json"),
              "missing": {"dataframe_records": [{k: v for k, v in first.items() if k != FEATURES[0]}]}}
    probe = run_probe(extract(built.zip_path, world.home / "lambda" / "unzipped"), events, warm_calls=0)
    assert probe["first"]["statusCode"] == 200 and probe["direct"]["statusCode"] == 200, probe
    return {"Lambda HTTP API event": by_id(ids, json.loads(probe["first"]["body"])["predictions"]),
            "Lambda direct invoke": by_id(ids, probe["direct"]["predictions"])}


def edge_scores(world: World) -> dict[str, pd.Series]:
    """A signed onnx_float bundle of the champion in a folder store; the agent verifies, installs, self-tests."""
    from flightdeck.edge.agent import Agent, AgentConfig
    from flightdeck.edge.bundle import GOLDEN, build_manifest, publish
    from flightdeck.edge.export import SELF_TEST_TOLERANCE, columns_of
    from flightdeck.edge.keys import generate_keypair, load_private_key
    from flightdeck.edge.models import load_model
    from flightdeck.edge.store import LocalStore
    from flightdeck.golden import golden_scores_document

    root = world.home / "edge"
    private_path, public_path = generate_keypair(root / "keys")
    store = LocalStore(root / "store")
    golden_rows = world.frame[list(FEATURES)].head(32)
    golden = golden_scores_document(golden_rows, load_model("onnx_float", world.model_bytes).score(
        columns_of(golden_rows)))
    files = {"model.onnx": world.model_bytes, GOLDEN: json.dumps(golden).encode()}
    manifest = build_manifest(model_name=MODEL, model_version=world.version, fmt="onnx_float", files=files,
                              rollout_percent=100.0, min_agent_version="1.0.0",
                              self_test_tolerance=SELF_TEST_TOLERANCE["onnx_float"])
    publish(store, manifest, files, load_private_key(private_path), "stable")
    agent = Agent(AgentConfig(root=root / "device", store_uri=store.uri, model_name=MODEL, device_id="parity-1",
                              public_key_path=public_path, retry_seconds=0.0))
    agent.start()
    assert agent.poll_once() == "updated"
    assert agent.active["model_version"] == world.version
    shuffled = world.frame.sample(frac=1.0, random_state=7)
    return {"edge agent (onnx_float)": by_id(shuffled[ENTITY_ID].tolist(), agent.score(columns_of(shuffled)))}


def pyfunc_scores(world: World) -> dict[str, pd.Series]:
    """`mlflow.pyfunc.load_model("models:/<name>@champion")` on a DataFrame of raw rows."""
    import mlflow

    from flightdeck import runtime
    from flightdeck.registry import Registry

    Registry.from_settings()  # points MLflow's fluent API at this world's store
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    # MLflow's schema enforcement reads each column's first value as `series[0]`: a default index.
    shuffled = world.frame.sample(frac=1.0, random_state=8).reset_index(drop=True)
    predicted = model.predict(shuffled[list(FEATURES)])[runtime.PROBABILITIES][:, 1]
    return {"mlflow.pyfunc": by_id(shuffled[ENTITY_ID].tolist(), predicted)}


def mlflow_serve_scores(world: World) -> dict[str, pd.Series]:
    """`mlflow models serve -m models:/<name>@champion` on a free loopback port, both pandas formats."""
    import os
    import subprocess
    import sys

    import httpx

    from flightdeck.config import get_settings
    from flightdeck.devtools.launch import free_port, stop_process_group
    from tests.support.poll import eventually

    port, bin_dir = free_port(), Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": get_settings().tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # it execs `uvicorn` from PATH
    log_path = world.home / f"mlflow-serve-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager",
             "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def pinged() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{base}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(pinged, 120, interval=0.5, what="mlflow models serve to answer /ping",
                   detail=lambda: log_path.read_text()[-3000:])
        ids, rows = world.records(seed=9)
        frame = pd.DataFrame(rows)
        bodies = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()},
                  "dataframe_records": rows}
        scores = {}
        for name, body in bodies.items():
            answer = httpx.post(f"{base}/invocations", json={name: body}, timeout=60)
            assert answer.status_code == 200, f"{name}: {answer.text[:500]}"
            probabilities = np.asarray(answer.json()["predictions"]["probabilities"])[:, 1]
            scores[f"mlflow models serve ({name})"] = by_id(ids, probabilities)
        return scores
    finally:
        stop_process_group(process, 20)


@pytest.fixture(scope="module")
def wheel_cache(pytestconfig, world):
    """The Lambda platform wheels, cached across runs as the serverless tests cache them."""
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("flightdeck-lambda-wheels") if cache is not None else world.home / "cache" / "wheels"


@pytest.fixture(scope="module")
def scored(world, wheel_cache) -> dict[str, pd.Series]:
    """Every surface's scores of the day, by customer id (the world's settings are in force)."""
    return {**batch_scores(world), **gateway_scores(world), **stream_scores(world),
            **lambda_scores(world, wheel_cache), **edge_scores(world), **pyfunc_scores(world),
            **mlflow_serve_scores(world)}


def test_every_surface_scores_every_row_of_the_day(world, scored):
    expected = set(world.frame[ENTITY_ID])
    assert sorted(scored) == sorted(SURFACES)
    for surface, scores in scored.items():
        assert set(scores.index) == expected, surface
        assert scores.between(0.0, 1.0).all() and scores.std() > 0.01, surface  # real, varied scores


def test_every_surface_agrees_with_every_other_within_1e9(world, scored):
    ids = world.frame[ENTITY_ID]
    aligned = pd.DataFrame({surface: scores.reindex(ids).to_numpy() for surface, scores in scored.items()})
    worst = {(a, b): float(np.max(np.abs(aligned[a] - aligned[b])))
             for a, b in itertools.combinations(aligned.columns, 2)}
    print("\nmax |Δscore| over", len(aligned), "rows, per pair of surfaces:")
    for (a, b), diff in sorted(worst.items(), key=lambda item: -item[1]):
        print(f"  {diff:.3e}  {a} vs {b}")
    disagreeing = {pair: diff for pair, diff in worst.items() if not diff <= TOLERANCE}
    assert disagreeing == {}


def test_the_int8_onnx_export_stays_within_the_edge_gate_on_the_same_rows(world, scored):
    """The quantised artifact is not exact; it must lose at most the AUC the edge gates allow."""
    from sklearn.metrics import roc_auc_score

    from flightdeck.edge.export import columns_of
    from flightdeck.edge.gates import AUC_LOSS_MAX
    from flightdeck.edge.models import load_model
    from flightdeck.edge.quantize import quantise_dynamic_int8

    quantised = quantise_dynamic_int8(world.model_bytes)
    assert quantised.model, quantised.note
    int8 = load_model("onnx_int8", quantised.model).score(columns_of(world.frame))
    exact = scored["batch"].reindex(world.frame[ENTITY_ID]).to_numpy()
    labels = world.frame[LABEL].to_numpy()
    champion_auc = roc_auc_score(labels, exact)
    loss = (champion_auc - roc_auc_score(labels, int8)) / champion_auc
    print(f"\nonnx_int8 vs the float champion on {len(int8)} rows: max |Δscore| {np.max(np.abs(int8 - exact)):.3e}, "
          f"relative AUC loss {loss:.3%} (gate {AUC_LOSS_MAX:.1%})")
    assert 0 < np.max(np.abs(int8 - exact)) and loss <= AUC_LOSS_MAX
