"""The `releases` role of docker/postgres/init-databases.sh, through which Airflow's tasks reach the
gateway's database, on the local PostgreSQL: the script itself runs (psql, as the postgres image
runs it) with every role and database renamed to throw-away names, then the gateway's migrations
run as its `gateway` role, as the gateway does when it starts. Checked: `releases` reads every
gateway table, writes none of them, takes and releases a release lock (which creates the lock
table), reaches no other database, and `gateway` still owns its tables. The same checks run on
copies of the script with one grant removed, or one too many, and must report it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flightdeck.delivery.lock import TABLE as LOCK_TABLE
from flightdeck.delivery.lock import ReleaseLocks
from flightdeck.serving import db
from tests.support.services import POSTGRES, require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "docker" / "postgres" / "init-databases.sh"
ROLES = ("airflow", "mlflow", "gateway", "releases")
DATABASES = ("airflow", "mlflow", "gateway")
HEREDOC = re.compile(r"(<<'SQL'\n)(.*?)(\nSQL\n)", re.DOTALL)


def renamed(script: str, names: dict[str, str]) -> str:
    """The script with every role and database in its SQL renamed (`gateway` → names["gateway"])."""
    match = HEREDOC.search(script)
    assert match, "the init script has no <<'SQL' … SQL block"
    sql = match.group(2)
    for role, name in names.items():
        sql, count = re.subn(rf"(?<![\w:']){role}(?![\w'])", name, sql)
        assert count, f"the init script's SQL never names {role}"
    return script[:match.start(2)] + sql + script[match.end(2):]


@contextmanager
def initialised(postgres_admin, script: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Run `script` as the postgres image would, with throw-away names; yield {role: URL of the
    role on its database (`releases`: on the gateway's)}; drop the databases and roles after."""
    require_service("psql", lambda: shutil.which("psql"))
    server = make_url(f"{POSTGRES}/postgres")
    tag = uuid.uuid4().hex[:10]
    names = {role: f"fdtest_{tag}_{role}" for role in ROLES}
    passwords = {role: uuid.uuid4().hex for role in ROLES}
    path = tmp_path / f"init-{tag}.sh"
    path.write_text(renamed(script, names))
    env = {"PATH": os.environ["PATH"], "PGHOST": server.host or "127.0.0.1", "PGPORT": str(server.port or 5432),
           "POSTGRES_USER": server.username or "postgres", "POSTGRES_DB": "postgres",
           **{f"{role.upper()}_DB_PASSWORD": passwords[role] for role in ROLES}}
    if server.password:
        env["PGPASSWORD"] = server.password
    urls = {role: server.set(username=names[role], password=passwords[role],
                             database=names["gateway" if role == "releases" else role])
                        .render_as_string(hide_password=False)
            for role in ROLES}
    urls["admin_gateway"] = server.set(database=names["gateway"]).render_as_string(hide_password=False)
    try:
        done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"the init script failed:\n{done.stdout}\n{done.stderr}"
        yield urls
    finally:
        for url in urls.values():
            db.dispose_engine(url)
        with postgres_admin.connect() as conn:
            for database in DATABASES:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{names[database]}" WITH (FORCE)'))
            for role in ROLES:
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{names[role]}"'))


def _refused(engine, statement: str) -> bool:
    """True if PostgreSQL refuses `statement` for lack of privilege (nothing is kept either way)."""
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(sa.text(statement))
            transaction.rollback()
    except sa.exc.ProgrammingError as exc:
        return "permission denied" in str(exc.orig) or "must be owner" in str(exc.orig)
    return False


def release_role_problems(urls: dict[str, str]) -> list[str]:
    """What `releases` can do and should not, or should and cannot; empty when the role is right."""
    from flightdeck.serving.predlog import PredictionRecord, _insert_rows

    problems: list[str] = []
    # The gateway creates its schema (as `gateway`, after the init script) and logs a prediction.
    db.upgrade(urls["gateway"])
    with db.write_transaction(db.engine_for(urls["gateway"])) as conn:
        _insert_rows(conn, [(datetime.now(UTC), [PredictionRecord(
            "gw-1", 0, "u1", "credit", "a", "1", 1, "live", "h", 0.25, 1.5)])])

    releases = db.engine_for(urls["releases"])
    gateway_tables = [*db.metadata.tables, db.VERSION_TABLE]
    try:
        with releases.connect() as conn:
            for table in gateway_tables:
                try:
                    rows = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                except sa.exc.ProgrammingError as exc:
                    problems.append(f"releases cannot read {table}: {exc.orig}".strip())
                    conn.rollback()
                    continue
                if table == "predictions" and rows != 1:
                    problems.append(f"releases sees {rows} predictions, the gateway logged 1")
    except sa.exc.OperationalError as exc:
        return [f"releases cannot connect to the gateway's database: {exc.orig}".strip()]

    for verb, statement in [
        ("INSERT into", "INSERT INTO predictions SELECT * FROM predictions WHERE false"),
        ("UPDATE", "UPDATE predictions SET score = score WHERE false"),
        ("DELETE from", "DELETE FROM predictions WHERE false"),
        ("ALTER", "ALTER TABLE predictions ADD COLUMN intruder integer"),
        ("DROP", "DROP TABLE outcomes"),
    ]:
        table = statement.split()[-1] if verb == "DROP" else "predictions"
        if not _refused(releases, statement):
            problems.append(f"releases can {verb} {table}")

    locks = ReleaseLocks(releases)
    try:
        first = locks.acquire("credit-model", "run-1", time.time() + 600)
        second = locks.acquire("credit-model", "run-2", time.time() + 600)
        held = locks.holder("credit-model")
        released = locks.release("credit-model", "run-1")
        if first is not None or second is None or second.run_id != "run-1" or held.run_id != "run-1" \
                or not released or locks.holder("credit-model") is not None:
            problems.append(f"the release lock misbehaves as releases: {first}, {second}, {held}, {released}")
    except sa.exc.DBAPIError as exc:
        problems.append(f"releases cannot take a release lock: {exc.orig}".strip())

    with db.engine_for(urls["admin_gateway"]).connect() as conn:
        owners = dict(conn.execute(sa.text(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")).all())
    gateway_role, releases_role = (make_url(urls[r]).username for r in ("gateway", "releases"))
    for table in gateway_tables:
        if owners.get(table) != gateway_role:
            problems.append(f"{table} is owned by {owners.get(table)}, not by the gateway's role")
    if LOCK_TABLE in owners and owners[LOCK_TABLE] != releases_role:
        problems.append(f"{LOCK_TABLE} is owned by {owners[LOCK_TABLE]}, not by releases")

    for other in ("airflow", "mlflow"):
        url = make_url(urls["releases"]).set(database=make_url(urls[other]).database)
        engine = sa.create_engine(url)
        try:
            with engine.connect():
                problems.append(f"releases can connect to the {other} database")
        except sa.exc.OperationalError:
            pass
        finally:
            engine.dispose()
    return problems


def test_the_releases_role_reads_the_gateway_log_writes_only_its_lock(postgres_admin, tmp_path):
    with initialised(postgres_admin, SCRIPT.read_text(), tmp_path) as urls:
        assert release_role_problems(urls) == []


def _grants(script: str) -> list[str]:
    return [line for line in HEREDOC.search(script).group(2).splitlines()
            if line.startswith(("GRANT", "ALTER DEFAULT PRIVILEGES"))]


def test_the_script_grants_releases_what_the_checks_expect():
    """The mutations below cover every grant of the script (a new one gets its own case)."""
    assert [line.split(" TO ")[0] for line in _grants(SCRIPT.read_text())] == [
        "GRANT CONNECT ON DATABASE gateway",
        "GRANT USAGE, CREATE ON SCHEMA public",
        "ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA public GRANT SELECT ON TABLES",
    ]


@pytest.mark.parametrize(("change", "expected"), [
    (("GRANT CONNECT ON DATABASE gateway TO releases;\n", ""), "cannot connect to the gateway's database"),
    (("GRANT USAGE, CREATE ON SCHEMA public TO releases;\n", ""), "cannot take a release lock"),
    (("ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA public GRANT SELECT ON TABLES TO releases;\n", ""),
     "releases cannot read predictions"),
    (("GRANT SELECT ON TABLES", "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES"), "releases can INSERT into predictions"),
    (("GRANT CONNECT ON DATABASE gateway TO releases;\n",
      "GRANT CONNECT ON DATABASE gateway TO releases;\nGRANT CONNECT ON DATABASE mlflow TO releases;\n"),
     "releases can connect to the mlflow database"),
], ids=["no-connect", "no-create", "no-select", "write-on-log", "other-database"])
def test_the_checks_report_a_missing_or_excess_grant(postgres_admin, tmp_path, change, expected):
    script = SCRIPT.read_text()
    old, new = change
    assert script.count(old) == 1, f"the init script no longer contains {old!r}"
    with initialised(postgres_admin, script.replace(old, new), tmp_path) as urls:
        problems = release_role_problems(urls)
    assert any(expected in problem for problem in problems), problems
