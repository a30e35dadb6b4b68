"""Score one day of raw parquet files with the ONNX artifact on Dask, into one prediction partition.

One Dask task per input file (plain futures, not dask.dataframe: futures-per-file reached
74 % of the single-process ceiling where `map_partitions` reached 57 %). Each task streams
its file in record batches, scores them with `flightdeck.runtime.score` (the one scoring
function) and writes `part-NNNNN.parquet` into a staging folder; the driver only receives
row counts. When every task has succeeded the folder replaces `predictions/ds=…` in one
rename (`flightdeck.data.partitions.staged_partition`), so readers see the old day or the
new day, never a mixture, and a re-run replaces the day instead of adding rows.

Each worker process opens the model once: the bytes are broadcast to the workers once per
job and sessions are cached per process, keyed by the model's sha256.

`output_root` must be on storage that the workers and the calling process see at the same
path (a local disk for a LocalCluster, a shared filesystem for a remote cluster).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, as_completed

from flightdeck import runtime
from flightdeck.data.layout import as_date, partition_path
from flightdeck.data.partitions import atomic_file, staged_partition
from flightdeck.data.schema import ENTITY_ID
from flightdeck.errors import ConfigError, FlightdeckError

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = (
    ENTITY_ID, "score", "predicted_label", "model_name", "model_version", "run_id", "scored_at",
)
"""Column order of a prediction partition."""

PREDICTION_SCHEMA = pa.schema([
    pa.field(ENTITY_ID, pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("predicted_label", pa.int8(), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
])

TASK_RETRIES = 2
"""Extra attempts for a task that raised (e.g. a flaky shared filesystem). A task whose worker
died is re-run elsewhere by the scheduler anyway (up to `distributed.scheduler.allowed-failures`)."""

_MAX_CACHED_SESSIONS = 4  # per worker process; a long-lived worker sees a few models, not many


class ScoringInputError(FlightdeckError):
    """An input file or a quarantine exclusion does not fit the scoring job."""


class EmptyInputError(FlightdeckError):
    """A scoring job was given no input files."""


@dataclass(frozen=True)
class ModelArtifact:
    """The ONNX artifact to score with, and the registry coordinates stamped on each row."""

    name: str
    version: str
    onnx_bytes: bytes = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 of the ONNX bytes: identifies the artifact in worker session caches."""
        return hashlib.sha256(self.onnx_bytes).hexdigest()


@dataclass(frozen=True)
class ScoringJob:
    """Everything needed to score one day.

    Attributes:
        ds: The day (date or "YYYY-MM-DD"); the output is `output_root/ds=YYYY-MM-DD`.
        input_files: Parquet files of the day's raw partition; output file i comes from input i.
        output_root: Folder of the prediction partitions.
        model: The artifact to score with.
        run_id: Identifies the run (e.g. Airflow's run_id); stamped on every row.
        scored_at: One tz-aware timestamp for the whole run, stamped on every row.
        threshold: Score at or above which `predicted_label` is 1.
        exclude_rows: Input file name -> row positions (0-based, within that file) to skip
            because they were quarantined.
        batch_rows: Rows per record batch; bounds each worker's memory, not the file size.
    """

    ds: date | str
    input_files: list[Path]
    output_root: Path
    model: ModelArtifact
    run_id: str
    scored_at: datetime
    threshold: float
    exclude_rows: Mapping[str, Sequence[int]] = field(default_factory=dict)
    batch_rows: int = 100_000

    def __post_init__(self) -> None:
        day = as_date(self.ds)
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "ds", day)
        set_(self, "input_files", [Path(p) for p in self.input_files])
        set_(self, "output_root", Path(self.output_root))
        if not self.input_files:
            raise EmptyInputError(
                f"no input files to score for ds={day:%Y-%m-%d}. Fix: check that the raw "
                "partition of that day exists and holds parquet files (or skip the day).")
        if self.scored_at.tzinfo is None or self.scored_at.utcoffset() is None:
            raise ConfigError("scored_at", f"{self.scored_at} has no time zone",
                              "pass a tz-aware datetime, e.g. the run's logical date in UTC")
        set_(self, "scored_at", self.scored_at.astimezone(UTC))
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError("threshold", f"{self.threshold} is not a probability",
                              "use 0 <= threshold <= 1")
        if self.batch_rows < 1:
            raise ConfigError("batch_rows", f"{self.batch_rows} rows per batch", "use at least 1")
        names = Counter(p.name for p in self.input_files)
        repeated = sorted(n for n, count in names.items() if count > 1)
        if repeated:
            raise ScoringInputError(
                f"input files of ds={day:%Y-%m-%d} share the name(s) {repeated}; exclusions are "
                "keyed by file name. Fix: pass the files of one partition folder.")
        unknown = sorted(set(self.exclude_rows) - set(names))
        if unknown:
            raise ScoringInputError(
                f"exclude_rows names file(s) {unknown} that are not input files of "
                f"ds={day:%Y-%m-%d}. Fix: build the exclusions from the same files you score.")


@dataclass(frozen=True)
class ScoringResult:
    """What `score_partition` did: counts, timing and where the partition is (no data)."""

    ds: date
    files: int
    rows_scored: int
    rows_excluded: int
    seconds: float
    rows_per_second: float
    output_path: Path


@dataclass(frozen=True)
class _TaskSpec:
    """The per-row stamps and knobs a task needs: the job without files and model bytes."""

    model_name: str
    model_version: str
    run_id: str
    scored_at: datetime
    threshold: float
    batch_rows: int

    @classmethod
    def of(cls, job: ScoringJob) -> _TaskSpec:
        return cls(job.model.name, job.model.version, job.run_id, job.scored_at, job.threshold,
                   job.batch_rows)


def score_file(
    path: str | os.PathLike[str],
    session: ort.InferenceSession,
    job: ScoringJob,
    exclude: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Score one input file in memory (for small files, checks and notebooks).

    Args:
        path: A raw parquet file.
        session: From `runtime.load_session(job.model.onnx_bytes)`.
        job: Supplies stamps, threshold and batch size.
        exclude: Row positions to skip; None means `job.exclude_rows` for this file's name.

    Returns:
        One row per scored input row, columns `PREDICTION_COLUMNS`.
    """
    path = Path(path)
    tables = list(_scored_tables(path, session, _TaskSpec.of(job), _exclusions(job, path, exclude)))
    return pa.concat_tables([PREDICTION_SCHEMA.empty_table(), *tables]).to_pandas()


def score_file_to(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    session: ort.InferenceSession,
    job: ScoringJob,
    exclude: Sequence[int] | None = None,
) -> int:
    """Score one input file into one parquet file, one record batch at a time.

    Memory is bounded by `job.batch_rows`, not by the file. The output appears complete
    or not at all (temp name, then rename), so a re-run task simply overwrites it.

    Args:
        path: A raw parquet file.
        out_path: The prediction file to write.
        session: From `runtime.load_session(job.model.onnx_bytes)`.
        job: Supplies stamps, threshold and batch size.
        exclude: Row positions to skip; None means `job.exclude_rows` for this file's name.

    Returns:
        Rows written.

    Raises:
        ScoringInputError: The file lacks a model column, or an exclusion is out of range.
        runtime.InvalidInputError: A row the model cannot score (e.g. a missing value).
    """
    path = Path(path)
    return _write_scored(path, Path(out_path), session, _TaskSpec.of(job),
                         _exclusions(job, path, exclude))


def score_partition(client: Client, job: ScoringJob) -> ScoringResult:
    """Score every input file of the day on the cluster and swap in the prediction partition.

    One task per input file writes `part-{i:05d}.parquet` into a staging folder; when all
    succeed the folder replaces `output_root/ds=…`. If a task fails for good its exception
    is raised here, the staging folder is discarded and the previous partition (if any) is
    left as it was. Re-running a job replaces the day: rows are never duplicated.

    Args:
        client: A synchronous client, e.g. from `flightdeck.batch.cluster.dask_client()`.
        job: What to score.

    Returns:
        Counts, timing and the partition folder.
    """
    started = time.perf_counter()
    spec = _TaskSpec.of(job)
    exclusions = {p.name: _exclusions(job, p, None) for p in job.input_files}
    rows_excluded = sum(len(e) for e in exclusions.values())
    # A fresh token per call: a re-run with the same run_id (an Airflow retry) must never be
    # answered from results the scheduler still holds for the previous attempt.
    attempt = uuid.uuid4().hex[:8]
    part_names = [_part_name(i) for i in range(len(job.input_files))]
    rows_scored = 0
    with staged_partition(job.output_root, job.ds) as staging:
        # Send the model once to every worker instead of once per task. hash=False gives the
        # data a key of its own: with a content key, a job started right after another job of
        # the same model could find its copy deleted by the previous job's release.
        model_bytes = client.scatter(job.model.onnx_bytes, broadcast=True, hash=False)
        futures = [
            client.submit(
                _score_file_task, path, staging / name, model_bytes, job.model.sha256, spec,
                exclusions[path.name],
                key=f"flightdeck-score-{job.ds:%Y-%m-%d}-{job.run_id}-{attempt}-{i:05d}",
                retries=TASK_RETRIES,
                pure=False,
            )
            for i, (path, name) in enumerate(zip(job.input_files, part_names, strict=True))
        ]
        try:
            for future in as_completed(futures, loop=client.loop):
                rows_scored += future.result()  # re-raises a task's final exception
                future.release()
        except BaseException:
            # Stop queued tasks; the staging folder (and anything still written into it)
            # is discarded by staged_partition.
            client.cancel(futures)
            raise
        finally:
            model_bytes.release()
        _keep_only(staging, part_names)
    seconds = time.perf_counter() - started
    result = ScoringResult(
        ds=job.ds, files=len(job.input_files), rows_scored=rows_scored,
        rows_excluded=rows_excluded, seconds=seconds,
        rows_per_second=rows_scored / seconds if seconds > 0 else 0.0,
        output_path=partition_path(job.output_root, job.ds),
    )
    log.info("scored ds=%s: %d rows from %d files (%d excluded) in %.1f s (%.0f rows/s) with %s v%s",
             f"{job.ds:%Y-%m-%d}", rows_scored, result.files, rows_excluded, seconds,
             result.rows_per_second, job.model.name, job.model.version)
    return result


# --- worker side -----------------------------------------------------------------------

_sessions: OrderedDict[str, ort.InferenceSession] = OrderedDict()
_session_loads: Counter[str] = Counter()
_sessions_lock = threading.Lock()


def cached_session(sha256: str, onnx_bytes: bytes) -> ort.InferenceSession:
    """This process's ONNX session for the model with this sha256, opened on first use.

    The lock makes a multi-threaded worker open each model once, too.
    """
    with _sessions_lock:
        session = _sessions.get(sha256)
        if session is None:
            session = runtime.load_session(onnx_bytes, intra_op_threads=1)
            _session_loads[sha256] += 1
            _sessions[sha256] = session
            while len(_sessions) > _MAX_CACHED_SESSIONS:
                _sessions.popitem(last=False)
        else:
            _sessions.move_to_end(sha256)
        return session


def session_loads() -> dict[str, int]:
    """How many sessions this process has opened, per model sha256 (`client.run(session_loads)`)."""
    with _sessions_lock:
        return dict(_session_loads)


def _score_file_task(path: Path, out_path: Path, onnx_bytes: bytes, sha256: str,
                     spec: _TaskSpec, exclude: np.ndarray) -> int:
    """One Dask task: score one file with this worker's cached session; return rows written."""
    return _write_scored(path, out_path, cached_session(sha256, onnx_bytes), spec, exclude)


def _write_scored(path: Path, out_path: Path, session: ort.InferenceSession, spec: _TaskSpec,
                  exclude: np.ndarray) -> int:
    # Batches are streamed into a ParquetWriter (not collected for `write_parquet`) to keep
    # memory bounded; the temp name starts with "." so partition readers never list it.
    # fsync happens here, on the worker, while other tasks still run (atomic_file):
    # staged_partition's own fsync before the swap then finds nothing left to flush.
    rows = 0
    with atomic_file(out_path) as sink, pq.ParquetWriter(sink, PREDICTION_SCHEMA) as writer:
        for table in _scored_tables(path, session, spec, exclude):
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _scored_tables(path: Path, session: ort.InferenceSession, spec: _TaskSpec,
                   exclude: np.ndarray) -> Iterator[pa.Table]:
    """Prediction tables for one file, one per record batch, excluded positions skipped."""
    features = runtime.input_columns(session)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScoringInputError(
            f"{path.name} is not a readable parquet file ({exc}). Fix: pass only the parquet "
            "files of the raw partition (or quarantine the broken file).") from exc
    with parquet:
        present = set(parquet.schema_arrow.names)
        missing = [c for c in (ENTITY_ID, *features) if c not in present]
        if missing:
            raise ScoringInputError(
                f"{path.name} has no column(s) {missing}. Fix: score raw partitions that "
                "follow flightdeck.data.schema, with every feature the model was trained on.")
        total = parquet.metadata.num_rows
        if exclude.size and exclude[-1] >= total:
            raise ScoringInputError(
                f"exclusions for {path.name} name row {int(exclude[-1])} but it has {total} rows. "
                "Fix: build the exclusions from this version of the file.")
        start = 0
        # use_threads=False: each worker is one core's worth of work; pyarrow's own pool would
        # oversubscribe the machine when every core runs a worker.
        for batch in parquet.iter_batches(batch_size=spec.batch_rows, columns=[ENTITY_ID, *features],
                                          use_threads=False):
            n = batch.num_rows
            lo, hi = np.searchsorted(exclude, [start, start + n])
            if hi > lo:
                keep = np.ones(n, dtype=bool)
                keep[exclude[lo:hi] - start] = False
                batch = batch.filter(pa.array(keep))
            first, start = start, start + n
            if batch.num_rows == 0:
                continue
            frame = batch.select(features).to_pandas(use_threads=False)
            try:
                scores = runtime.score(session, frame)
            except runtime.InvalidInputError as exc:
                raise runtime.InvalidInputError(
                    f"{path.name}, rows {first}..{start - 1}: {exc}") from exc
            yield _prediction_table(batch.column(ENTITY_ID), scores, spec)


def _prediction_table(ids: pa.Array, scores: np.ndarray, spec: _TaskSpec) -> pa.Table:
    n = len(scores)
    return pa.Table.from_arrays([
        ids.cast(pa.string()),
        pa.array(scores, pa.float64()),
        pa.array((scores >= spec.threshold).astype(np.int8)),
        pa.repeat(pa.scalar(spec.model_name, pa.string()), n),
        pa.repeat(pa.scalar(spec.model_version, pa.string()), n),
        pa.repeat(pa.scalar(spec.run_id, pa.string()), n),
        pa.repeat(pa.scalar(spec.scored_at, pa.timestamp("us", tz="UTC")), n),
    ], schema=PREDICTION_SCHEMA)


# --- helpers ---------------------------------------------------------------------------

def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _exclusions(job: ScoringJob, path: Path, exclude: Sequence[int] | None) -> np.ndarray:
    """Sorted unique row positions to skip in `path`, validated as non-negative integers."""
    raw = job.exclude_rows.get(path.name, ()) if exclude is None else exclude
    positions = np.unique(np.asarray(list(raw), dtype=np.int64))
    if positions.size and positions[0] < 0:
        raise ScoringInputError(
            f"exclusions for {path.name} include negative row position {int(positions[0])}. "
            "Fix: pass 0-based row positions within the file.")
    return positions


def _keep_only(staging: Path, part_names: list[str]) -> None:
    """Check every output file is present and drop debris of tasks that died mid-write."""
    expected = set(part_names)
    present = {p.name for p in staging.iterdir()}
    missing = expected - present
    if missing:
        raise ConfigError(
            "output_root",
            f"{len(missing)} of {len(expected)} output files are missing from {staging} although "
            "their tasks succeeded: the workers wrote to a path this process cannot see",
            "put output_root on storage shared by the workers and the caller, at the same path",
        )
    for name in present - expected:
        (staging / name).unlink(missing_ok=True)
