"""dask_client: local cluster sizing from arguments and settings, connecting to a running
scheduler without closing it, and a typed error when the scheduler cannot be reached."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time

import pytest
from distributed import Client, LocalCluster

from flightdeck.batch import cluster as cluster_module
from flightdeck.batch.cluster import SchedulerUnreachableError, dask_client, default_worker_count
from flightdeck.config import get_settings
from flightdeck.errors import ConfigError, FlightdeckError


def _unused_address() -> str:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def _workers(client: Client) -> dict:
    return client.scheduler_info(n_workers=-1)["workers"]


@pytest.fixture
def settings_env(flightdeck_home, monkeypatch):
    """Set FLIGHTDECK_* variables and make get_settings() see them."""
    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"FLIGHTDECK_{name.upper()}", value)
        get_settings.cache_clear()
    return set_env


@pytest.fixture(scope="module")
def running_cluster():
    """A scheduler with one in-process worker that dask_client only connects to."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster


def test_local_cluster_from_settings_one_single_threaded_process_per_worker(settings_env):
    settings_env(dask_workers="2")
    with dask_client() as client:
        workers = _workers(client)
        assert len(workers) == 2
        assert {w["nthreads"] for w in workers.values()} == {1}
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        assert client.submit(sum, [1, 2, 3]).result() == 6
        cluster = client.cluster
    assert client.status == "closed"
    assert cluster.status.name == "closed", "a local cluster started for the block is closed with it"


def test_n_workers_overrides_settings(settings_env):
    settings_env(dask_workers="2")
    with dask_client(n_workers=1) as client:
        assert len(_workers(client)) == 1


def test_default_size_is_one_worker_per_usable_core(settings_env, monkeypatch):
    assert default_worker_count() == len(os.sched_getaffinity(0))
    settings_env()  # neither FLIGHTDECK_DASK_WORKERS nor an address
    monkeypatch.delenv("FLIGHTDECK_DASK_WORKERS", raising=False)
    monkeypatch.delenv("FLIGHTDECK_DASK_SCHEDULER_ADDRESS", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr(cluster_module, "default_worker_count", lambda: 1)  # not 64 on a big CI box
    with dask_client() as client:
        assert len(_workers(client)) == 1


def test_an_empty_address_forces_a_local_cluster(settings_env):
    settings_env(dask_scheduler_address=_unused_address(), dask_workers="1")
    with dask_client("") as client:
        assert len(_workers(client)) == 1


def test_connecting_to_a_running_scheduler_leaves_it_running(running_cluster):
    address = running_cluster.scheduler_address
    with dask_client(address, n_workers=1, timeout=10) as client:
        assert client.scheduler.address == address
        assert client.submit(lambda x: x + 1, 41).result() == 42
    assert client.status == "closed"
    with Client(address, timeout=10) as again:  # the cluster outlived our client
        assert again.submit(lambda x: x * 2, 21).result() == 42


def test_address_comes_from_settings(settings_env):
    address = _unused_address()
    settings_env(dask_scheduler_address=address)
    with pytest.raises(SchedulerUnreachableError, match=address):
        with dask_client(timeout=1):
            pass


def test_unreachable_scheduler_is_a_typed_error_naming_address_and_fix():
    address = _unused_address()
    started = time.monotonic()
    with pytest.raises(SchedulerUnreachableError) as caught:
        with dask_client(address, timeout=2):
            pytest.fail("the block must not run without a scheduler")
    assert time.monotonic() - started < 20
    error = caught.value
    assert isinstance(error, FlightdeckError)
    assert error.address == address
    assert address in str(error) and "Fix:" in str(error) and "FLIGHTDECK_DASK_SCHEDULER_ADDRESS" in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_too_few_workers_within_timeout_is_a_typed_error(running_cluster):
    with pytest.raises(SchedulerUnreachableError, match="only 1 of 3 workers joined"):
        with dask_client(running_cluster.scheduler_address, n_workers=3, timeout=1):
            pass


@pytest.mark.parametrize("kwargs, name", [({"n_workers": 0}, "n_workers"),
                                          ({"address": "not an address"}, "dask_scheduler_address")])
def test_bad_arguments_are_config_errors(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        with dask_client(timeout=1, **kwargs):
            pass


GUARDED_MAIN = '''
import os, sys
if __name__ != "__main__":
    # What the `airflow` entry point does in a task process: its import fails there.
    raise RuntimeError("the main module was re-imported by a worker process")
from flightdeck.batch.cluster import dask_client
with dask_client(n_workers=1) as client:
    print("answer", client.submit(sum, [40, 2]).result())
'''


def test_local_workers_do_not_reimport_the_callers_main_module(tmp_path):
    # LocalCluster's spawned workers re-import __main__; inside an Airflow task that is the
    # `airflow` script and every worker failed to start. The local cluster must not do it.
    script = tmp_path / "entry_point.py"
    script.write_text(GUARDED_MAIN)
    env = {**os.environ, "FLIGHTDECK_DASK_SCHEDULER_ADDRESS": ""}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer 42" in done.stdout
