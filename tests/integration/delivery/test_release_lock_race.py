"""Runs racing for a model's release lock, on the real stores: MLflow's SQLite registry and the
lock table on SQLite (the gateway's default database) and on PostgreSQL. Contenders are threads
released together by a barrier, each calling the same function the resolve task calls, on its own
database connection. Of every round exactly one run may hold the model, whether the model was
free or its lock had lapsed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
from flightdeck.delivery.release import (
    ReleaseLockedError,
    acquire_release_lock,
    release_release_lock,
)
from flightdeck.registry import Registry

MODEL = "raced"
ROUNDS = 20
CONTENDERS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, flightdeck_home, monkeypatch) -> Registry:
    """A registry with the model; the lock table in the gateway database of the parameter."""
    from flightdeck.config import get_settings

    if request.param == "postgresql":
        monkeypatch.setenv("FLIGHTDECK_GATEWAY_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    assert get_settings().gateway_db_url.startswith(request.param)
    registry = Registry.from_settings()
    registry.client.create_registered_model(MODEL)
    return registry


def rollout(started_at: float) -> ResolvedRollout:
    plan = RolloutPlan.parse({"strategy": "canary", "model_name": MODEL, "max_duration_seconds": 600})
    return ResolvedRollout(plan, baseline_version="1", candidate_version="2", started_at=started_at)


def race(registry: Registry, round_: int, pool: ThreadPoolExecutor) -> list[str]:
    """All contenders try at once; the run ids that got the lock."""
    barrier = threading.Barrier(CONTENDERS)

    def contend(i: int) -> str | None:
        run_id = f"round{round_}_run{i}"
        barrier.wait(timeout=60)
        try:
            acquire_release_lock(rollout(time.time()), registry, run_id)
        except ReleaseLockedError:
            return None
        return run_id

    return [run_id for run_id in pool.map(contend, range(CONTENDERS)) if run_id is not None]


def test_of_runs_resolving_at_the_same_instant_exactly_one_takes_a_free_model(registry):
    with ThreadPoolExecutor(CONTENDERS) as pool:
        for round_ in range(ROUNDS):
            winners = race(registry, round_, pool)
            assert len(winners) == 1, f"round {round_}: {winners} all took the lock"
            assert release_release_lock(rollout(time.time()), registry, winners[0]) is True


def test_of_runs_finding_the_same_lapsed_lock_exactly_one_takes_it_over(registry):
    with ThreadPoolExecutor(CONTENDERS) as pool:
        for round_ in range(ROUNDS):
            dead = f"round{round_}_dead"
            acquire_release_lock(rollout(time.time() - 601), registry, dead)  # its rollout's time is up
            winners = race(registry, round_, pool)
            assert len(winners) == 1, f"round {round_}: {winners} all took over {dead}'s lock"
            assert release_release_lock(rollout(time.time()), registry, dead) is False  # the late holder drops nothing
            assert release_release_lock(rollout(time.time()), registry, winners[0]) is True


def _contender(url: str, index: int, start, results) -> None:
    """A separate process (as Airflow runs each task): per round, wait for the start, try once."""
    from flightdeck.delivery.lock import ReleaseLocks
    from flightdeck.serving.db import engine_for

    locks = ReleaseLocks(engine_for(url))
    for round_ in range(ROUNDS):
        start.wait(timeout=120)
        run_id = f"round{round_}_process{index}"
        try:
            won = locks.acquire(MODEL, run_id, time.time() + 600) is None
            results.put((round_, run_id if won else None, None))
        except Exception as exc:  # reported to the test, which fails on it
            results.put((round_, None, f"{run_id}: {exc!r}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def lock_db_url(request, tmp_path) -> str:
    """A lock database with no table yet: the first round also races to create it."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'gateway.db'}"


def test_processes_race_for_a_free_or_lapsed_lock_in_a_new_database_and_exactly_one_wins(lock_db_url):
    import multiprocessing

    from flightdeck.delivery.lock import ReleaseLocks
    from flightdeck.serving.db import engine_for

    context = multiprocessing.get_context("fork")  # the test process has no threads of its own here
    start, results = context.Barrier(CONTENDERS + 1), context.Queue()
    processes = [context.Process(target=_contender, args=(lock_db_url, index, start, results), daemon=True)
                 for index in range(CONTENDERS)]
    for process in processes:
        process.start()
    locks = ReleaseLocks(engine_for(lock_db_url))
    try:
        for round_ in range(ROUNDS):
            lapsed = round_ % 2 == 1  # odd rounds: a dead run's lock whose time is up
            if lapsed:
                assert locks.acquire(MODEL, f"round{round_}_dead", time.time() - 1) is None
            start.wait(timeout=120)
            outcomes = [results.get(timeout=120) for _ in range(CONTENDERS)]
            assert [error for _, _, error in outcomes if error] == []
            assert {got_round for got_round, _, _ in outcomes} == {round_}
            winners = [run_id for _, run_id, _ in outcomes if run_id]
            assert len(winners) == 1, f"round {round_} ({'lapsed' if lapsed else 'free'}): {winners} all won"
            assert locks.holder(MODEL).run_id == winners[0]
            assert locks.release(MODEL, winners[0]) is True
    finally:
        start.abort()  # after a failed round, the contenders stop waiting instead of timing out
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    assert [process.exitcode for process in processes] == [0] * CONTENDERS
