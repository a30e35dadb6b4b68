"""The guide's tests: a prepared embedded state for the Try-it blocks, and the harness that runs them.

`guide_home` (session) is a FLIGHTDECK_HOME prepared once, as a reader has it after the guide's
quick start:
- raw partitions ds=2026-01-01 … ds=2026-01-21 under data/raw/, 300 rows a day, scenario clean;
- in the embedded MLflow (sqlite under mlflow/), the registered model `flightdeck-classifier`:
  version 1 (alias `champion`), a logistic regression trained on 2026-01-01 … 2026-01-10, and
  version 2 (alias `challenger`), one trained on 2026-01-08 … 2026-01-21 and registered whatever
  its evaluation said (as the release demo does), both with labels as of 2026-03-31, both with the
  train_register stages (holdout metrics, ONNX export, parity, training key);
- the gateway's database migrated (gateway/gateway.db), no route table (one endpoint on the champion);
- an Airflow metadata database migrated (airflow/airflow.db, SQLite): AIRFLOW_HOME is home/airflow,
  as the Makefile sets it.

`run_try_it(page, guide_home, workdir)` runs a page's Try-it blocks (```` ```bash title="Try it" ````, in
order, as one `bash -euo pipefail` script) with cwd = the repository root, against a COPY of that
home, in an environment like the Makefile's:
FLIGHTDECK_HOME, AIRFLOW_HOME, AIRFLOW__CORE__DAGS_FOLDER / PLUGINS_FOLDER / LOAD_EXAMPLES /
EXECUTOR (and the SQLite metadata database under AIRFLOW_HOME spelled out), PATH starting with
.venv/bin; and two free loopback ports, `FD_PORT` (the gateway's HTTP
port) and `FD_GRPC_PORT` (its gRPC port). Write blocks so that a reader without them gets the
defaults: `flightdeck serve --port "${FD_PORT:-8000}" --grpc-port "${FD_GRPC_PORT:-8081}" &`.
The release policy is the repository's default (include/config/release_policy.yaml), not the
permissive one the other tests use. The script runs in a process group of its own, killed at the
end (a block may leave `flightdeck serve … &` running for the page's later blocks); it must finish
within the page's timeout (60 s unless the page holds `<!-- try-it-timeout: N -->`). A page whose
blocks need Redis or PostgreSQL says so with `<!-- try-it-requires: redis -->`: the test is
skipped without it (failed under CI). On failure
the test shows the exit code, the script and the end of its output.

Blocks write only under $FLIGHTDECK_HOME (or `mktemp -d`; TMPDIR is the run's own): never into the
repository. With `pipefail`, `producer | head -n 5` fails when the producer gets SIGPIPE: filter
with `sed -n 1,5p` or `grep` instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent

RAW_DAYS = ("2026-01-01", "2026-01-21")
ROWS_PER_DAY = 300
LABELS_AS_OF = "2026-03-31"
V1_WINDOW = ("2026-01-01", "2026-01-10")
V2_WINDOW = ("2026-01-08", "2026-01-21")
MODEL = "flightdeck-classifier"

TRY_IT_FENCE = re.compile(r'^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})bash title="Try it"[ \t]*$')
TIMEOUT_MARK = re.compile(r"<!--\s*try-it-timeout:\s*(\d+)\s*-->")
REQUIRES_MARK = re.compile(r"<!--\s*try-it-requires:\s*([a-z, ]+?)\s*-->")
DEFAULT_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------
# The prepared home
# ---------------------------------------------------------------------------------------------

def base_env(home: Path) -> dict[str, str]:
    """The environment the Makefile gives flightdeck and Airflow, on `home`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FLIGHTDECK_", "AIRFLOW_", "AIRFLOW__", "FD_"))}
    env.update({
        "FLIGHTDECK_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def build_models() -> None:
    """Versions 1 and 2 in the FLIGHTDECK_HOME of this process (run in a subprocess by
    `build_guide_home`, so the test process never imports the ML stack)."""
    import logging

    from flightdeck.config import get_settings
    from flightdeck.registry import Registry
    from flightdeck.serving import db
    from flightdeck.training import pipeline
    from flightdeck.training.params import TrainParams

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    registry = Registry.from_settings()
    for run, (start, end) in (("guide-v1", V1_WINDOW), ("guide-v2", V2_WINDOW)):
        params = TrainParams.parse({"window_start": start, "window_end": end, "labels_as_of": LABELS_AS_OF,
                                    "model_type": "logistic_regression", "model_name": MODEL})
        staging = pipeline.staging_dir(run)
        validation = pipeline.validate_window(params)
        pipeline.train(params, staging)
        evaluation = pipeline.evaluate(params, staging, registry)
        mlflow_run = pipeline.log_run(params, validation, evaluation, registry, airflow_run_id=run)
        exported = pipeline.export_onnx(params, staging, registry, mlflow_run)
        pipeline.register(params, registry, mlflow_run, exported["model_uri"], validation["training_key"],
                          evaluation["decision"]["reason"])
    aliases = registry.aliases(MODEL)
    assert aliases.get("champion") == "1" and aliases.get("challenger") == "2", aliases
    db.upgrade(get_settings().gateway_db_url)


def _run(args: list[str], env: dict, timeout: float) -> None:
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(args)} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")


def build_guide_home(home: Path) -> Path:
    """Build the prepared state at `home` (see the module docstring); about a minute on 2 cores.
    The Airflow migration runs alongside the data and the models."""
    env = base_env(home)
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    with open(home / "airflow-db-migrate.log", "w") as migrate_log:
        migrate = subprocess.Popen([str(BIN / "airflow"), "db", "migrate"], env=env, cwd=REPO,
                                   stdout=migrate_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _run([str(BIN / "flightdeck"), "generate-data", "--start", RAW_DAYS[0], "--end", RAW_DAYS[1],
                  "--rows-per-day", str(ROWS_PER_DAY)], env, 300)
            # A module, not `python -c`: pyspark (imported by Great Expectations) exits a process whose
            # main module has no file, taking it for a doctest run.
            _run([sys.executable, "-m", "tests.docs.conftest", "--models-only"], env, 600)
            code = migrate.wait(timeout=600)
        finally:
            if migrate.poll() is None:
                os.killpg(migrate.pid, signal.SIGKILL)
                migrate.wait()
    assert code == 0, f"airflow db migrate exited {code}:\n{(home / 'airflow-db-migrate.log').read_text()[-5000:]}"
    return home


def copy_home(template: Path, target: Path) -> Path:
    """A private copy of the prepared home at `target`. MLflow keeps absolute paths (artifact
    locations) in its SQLite file and Airflow its database's path in airflow.cfg: they are rewritten
    to the copy, so nothing a Try-it script does reaches the template."""
    shutil.copytree(template, target, symlinks=True)
    old, new = str(template), str(target)
    for database in target.rglob("*.db"):
        _rewrite_sqlite(database, old, new)
    for config in target.rglob("*.cfg"):
        config.write_text(config.read_text().replace(old, new))
    return target


def _rewrite_sqlite(path: Path, old: str, new: str) -> None:
    connection = sqlite3.connect(path)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')
                       if row[2].upper() in ("TEXT", "") or "CHAR" in row[2].upper()]
            for column in columns:
                connection.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                   f'WHERE "{column}" LIKE ?', (old, new, f"%{old}%"))
        connection.commit()
    finally:
        connection.close()


@pytest.fixture(scope="session")
def guide_home(tmp_path_factory) -> Path:
    """The prepared FLIGHTDECK_HOME (read-only: run Try-it scripts on `copy_home` of it)."""
    return build_guide_home(tmp_path_factory.mktemp("guide") / "home")


# ---------------------------------------------------------------------------------------------
# Try-it blocks
# ---------------------------------------------------------------------------------------------

def try_it_blocks(markdown: str) -> list[str]:
    """The page's ```` ```bash title="Try it" ```` blocks, in order, their indentation removed."""
    blocks, lines, index = [], markdown.splitlines(), 0
    while index < len(lines):
        opening = TRY_IT_FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^{re.escape(indent)}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body = []
        while index < len(lines) and not closing.match(lines[index]):
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        if index == len(lines):
            raise ValueError(f"a Try-it block opened with {lines[index - len(body) - 1]!r} is never closed")
        index += 1
        blocks.append("\n".join(body))
    return blocks


def pages_with_try_it() -> list[Path]:
    return [page for page in sorted(DOCS.rglob("*.md")) if try_it_blocks(page.read_text())]


def page_timeout(markdown: str) -> int:
    mark = TIMEOUT_MARK.search(markdown)
    return int(mark.group(1)) if mark else DEFAULT_TIMEOUT


def page_requirements(markdown: str) -> list[str]:
    """Services a page's blocks need (`<!-- try-it-requires: redis, postgres -->`)."""
    mark = REQUIRES_MARK.search(markdown)
    return [name.strip() for name in mark.group(1).split(",") if name.strip()] if mark else []


def require_page_services(markdown: str) -> None:
    """Skip (fail under CI) when a service the page needs is missing: tests.support.require_service."""
    from tests.support.services import require_service

    for name in page_requirements(markdown):
        if name == "redis":
            import redis

            require_service("Redis on 127.0.0.1:6379",
                            lambda: redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2).ping())
        elif name == "postgres":
            from tests.support.services import postgres_admin_engine

            postgres_admin_engine().dispose()
        else:
            raise ValueError(f"unknown service {name!r} in try-it-requires; known: redis, postgres")


def page_script(markdown: str) -> str:
    """One script of every Try-it block of the page, each announced on stderr (for the failure log)."""
    parts = ["set -euo pipefail"]
    for number, block in enumerate(try_it_blocks(markdown), start=1):
        parts.append(f"echo '----- Try it, block {number} -----' >&2")
        parts.append(block)
    return "\n".join(parts) + "\n"


@dataclass
class TryItRun:
    page: str
    returncode: int | None  # None: killed at the timeout
    output: str
    seconds: float
    script: str
    timeout: int

    def failure(self) -> str:
        what = (f"timed out after {self.timeout} s" if self.returncode is None
                else f"exited {self.returncode} after {self.seconds:.1f} s")
        return (f"the Try-it blocks of {self.page} {what}.\n===== script =====\n{self.script}"
                f"===== output (last 8000 characters) =====\n{self.output[-8000:]}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the script's whole process group (background servers too), SIGKILL after `grace`."""
    with_term = _group_alive(process.pid)
    if with_term:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            with_term = False
    deadline = time.monotonic() + grace
    while with_term and _group_alive(process.pid) and time.monotonic() < deadline:
        if process.poll() is None:
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_try_it(page: Path, template_home: Path, workdir: Path, timeout: int | None = None) -> TryItRun:
    """Run `page`'s Try-it blocks against a copy of `template_home` (see the module docstring)."""
    from flightdeck.devtools.launch import free_port

    markdown = page.read_text()
    script = page_script(markdown)
    timeout = timeout or page_timeout(markdown)
    home = copy_home(template_home, workdir / "home")
    scratch = workdir / "tmp"
    scratch.mkdir()
    http_port = free_port()
    grpc_port = free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    env = base_env(home)
    env.update({"FD_PORT": str(http_port), "FD_GRPC_PORT": str(grpc_port), "TMPDIR": str(scratch)})
    script_file = workdir / "try-it.sh"
    script_file.write_text(script)
    log_file = workdir / "try-it.log"
    started = time.monotonic()
    with open(log_file, "w") as log:
        process = subprocess.Popen(["bash", "-euo", "pipefail", str(script_file)], env=env, cwd=REPO,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            seconds = time.monotonic() - started
            _stop_group(process)
    name = page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else str(page)
    return TryItRun(name, returncode, log_file.read_text(errors="replace"), seconds, script, timeout)


@pytest.fixture
def try_it_workdir():
    """A short scratch folder (unix socket paths under it stay short)."""
    folder = Path(tempfile.mkdtemp(prefix="fd-try-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    # `python -m tests.docs.conftest`: the prepared state in $FLIGHTDECK_HOME, for a reader who
    # wants to run the Try-it blocks by hand (the docs home page says how).
    if sys.argv[1:] == ["--models-only"]:
        build_models()
    else:
        build_guide_home(Path(os.environ["FLIGHTDECK_HOME"]).resolve())
        print(f"prepared {os.environ['FLIGHTDECK_HOME']}: raw data {RAW_DAYS[0]} … {RAW_DAYS[1]}, "
              f"{MODEL} v1 (champion) and v2 (challenger), Airflow and gateway databases")
