"""Where batch scoring runs: a Dask client for an existing scheduler or a local cluster.

`dask_client()` is the one way flightdeck gets a Dask cluster. With no arguments it follows
the settings: `FLIGHTDECK_DASK_SCHEDULER_ADDRESS` (connect to a running `dask scheduler`)
or, when that is unset, a local cluster with `FLIGHTDECK_DASK_WORKERS` workers (default one
per core).

The local cluster is distributed's `SubprocessCluster` rather than `LocalCluster`:
LocalCluster spawns workers with multiprocessing, which re-imports the parent's `__main__`;
inside an Airflow task that is the `airflow` script, whose import fails there (task
processes are denied the metadata database), so every worker failed to start. A
SubprocessCluster starts the scheduler and each worker as fresh `python -m` processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from distributed import Client
from distributed.deploy.subprocess import SubprocessCluster

from flightdeck.config import get_settings
from flightdeck.errors import ConfigError, FlightdeckError

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 so that freed memory goes
# back to the OS. As a side effect glibc stops raising its mmap threshold, so every
# batch-sized array (about 1 MB) is mmap'd, page-faulted and unmapped again: scoring ran
# 10-15 % slower here. A fixed 32 MiB threshold keeps the trimming and serves batch arrays
# from the heap. For a `dask worker` you start yourself, export MALLOC_MMAP_THRESHOLD_=33554432.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}

CONNECT_TIMEOUT_SECONDS = 30.0
"""How long `dask_client` waits for a scheduler (and for `n_workers` workers) by default."""


class SchedulerUnreachableError(FlightdeckError):
    """The configured Dask scheduler did not answer, or too few workers joined it in time."""

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(
            f"Dask scheduler {address}: {problem}. Fix: start the scheduler and its workers "
            f"(`dask scheduler`, `dask worker {address}`), correct FLIGHTDECK_DASK_SCHEDULER_ADDRESS, "
            "or unset it to score on a local cluster."
        )

    def __reduce__(self):  # keep the two-argument constructor picklable
        return (type(self), (self.address, self.problem))


def default_worker_count() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. in containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    address: str | None = None,
    n_workers: int | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> Iterator[Client]:
    """A `distributed.Client` for the duration of the block.

    Args:
        address: `tcp://host:port` of a running scheduler. None means
            `settings.dask_scheduler_address`; if that is unset too (or `address` is ""),
            a local cluster is started for the block and closed afterwards. A cluster reached by address is
            never closed: only this client's connection is.
        n_workers: For a local cluster, the number of single-threaded worker processes
            (None means `settings.dask_workers`, else one per core). For a running
            scheduler, if given, wait until that many workers have joined.
        timeout: Seconds to wait for the scheduler (and for `n_workers` workers).

    Yields:
        The connected client.

    Raises:
        SchedulerUnreachableError: The scheduler did not answer, or too few workers joined,
            within `timeout`.
        ConfigError: `n_workers` is below 1 or `address` is malformed.
    """
    settings = get_settings()
    if n_workers is not None and n_workers < 1:
        raise ConfigError("n_workers", f"{n_workers} workers requested", "ask for at least 1 worker")
    address = address if address is not None else settings.dask_scheduler_address
    if address:
        with _connect(address, n_workers, timeout) as client:
            yield client
        return
    workers = n_workers or settings.dask_workers or default_worker_count()
    # One single-threaded process per core: ONNX Runtime sessions run with one intra-op
    # thread and pandas/pyarrow conversions hold the GIL, so processes, not threads, scale.
    cluster = SubprocessCluster(
        host="127.0.0.1",
        n_workers=workers,
        threads_per_worker=1,
        dashboard_address=None,
        worker_kwargs={"env": WORKER_ENV},
        silence_logs=logging.ERROR,  # task errors still reach the caller as exceptions
    )
    try:
        with Client(cluster, set_as_default=False) as client:
            # The worker processes join asynchronously; scoring before they do would queue.
            client.wait_for_workers(workers, timeout=timeout)
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def _connect(address: str, n_workers: int | None, timeout: float) -> Iterator[Client]:
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except ValueError as exc:  # e.g. an unknown protocol or a missing port
        raise ConfigError(
            "dask_scheduler_address", f"{address!r} is not a scheduler address ({exc})",
            "use tcp://host:port",
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(address, f"no answer within {timeout:g} s ({exc})") from exc
    try:
        if n_workers:
            try:
                client.wait_for_workers(n_workers, timeout=timeout)
            except TimeoutError as exc:
                joined = len(client.scheduler_info(n_workers=-1)["workers"])
                raise SchedulerUnreachableError(
                    address, f"only {joined} of {n_workers} workers joined within {timeout:g} s"
                ) from exc
        yield client
    finally:
        client.close()
