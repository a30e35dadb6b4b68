"""Checkers of the overview and batch exercises: the registry, raw and prediction partitions, reports."""

from __future__ import annotations

from datetime import date

from flightdeck.guide.checks.base import Context, Criterion, answer_file_criterion, close, needs

SCORED_DAY = "2026-01-21"
BACKFILL_DAYS = ("2026-01-05", "2026-01-06", "2026-01-07")


def _valid_rows(ctx: Context, ds: str) -> int | None:
    """Rows of the raw day minus the rows batch validation quarantined (None: no raw day)."""
    from flightdeck.data.partitions import list_partitions, read_partition

    day = date.fromisoformat(ds)
    if day not in list_partitions(ctx.settings.raw_dir):
        return None
    raw = len(read_partition(ctx.settings.raw_dir, ds))
    quarantined = 0
    if day in list_partitions(ctx.settings.quarantine_dir):
        try:
            quarantined = len(read_partition(ctx.settings.quarantine_dir, ds))
        except Exception:  # noqa: BLE001 - a quarantine holding only unreadable files
            quarantined = 0
    return raw - quarantined


def _predictions(ctx: Context, ds: str):
    from flightdeck.data.partitions import list_partitions, read_partition

    if date.fromisoformat(ds) not in list_partitions(ctx.settings.predictions_dir):
        return None
    return read_partition(ctx.settings.predictions_dir, ds)


def _day_criteria(ctx: Context, ds: str, version: str | None, who: str) -> list[Criterion]:
    frame = _predictions(ctx, ds)
    exists = Criterion(frame is not None, f"a prediction partition predictions/ds={ds} exists",
                       "found it" if frame is not None else f"nothing under {ctx.settings.predictions_dir}")
    if frame is None:
        return [exists, needs(exists, f"ds={ds} was scored by {who}"),
                needs(exists, f"ds={ds} holds one row per valid input row")]
    versions = sorted(set(frame["model_version"].astype(str)))
    by_version = Criterion(version is not None and versions == [version], f"ds={ds} was scored by {who}",
                           f"rows name model version(s) {versions}; expected version {version}")
    expected = _valid_rows(ctx, ds)
    runs = sorted(set(frame["run_id"].astype(str)))
    complete = (expected is not None and len(frame) == expected and not frame["customer_id"].duplicated().any()
                and frame["score"].between(0, 1).all() and len(runs) == 1)
    rows = Criterion(complete, f"ds={ds} holds one row per valid input row, scores in [0, 1], from one run",
                     f"{len(frame)} rows for {expected} valid input rows, {len(runs)} run id(s)")
    return [exists, by_version, rows]


def check_01(ctx: Context) -> list[Criterion]:
    from flightdeck.data.partitions import list_partitions

    answer, data = answer_file_criterion(ctx, 1, ["champion", "challenger", "raw_days", "champion_auc"])
    if data is None:
        return [answer]
    champion, challenger = ctx.alias("champion"), ctx.alias("challenger")
    days = len(list_partitions(ctx.settings.raw_dir))
    auc = None
    if champion is not None:
        run_id = ctx.registry.get_version(ctx.model, champion).run_id
        auc = ctx.registry.client.get_run(run_id).data.metrics.get("holdout_roc_auc")
    return [
        answer,
        Criterion(str(data["champion"]) == str(champion), "`champion` is the version the champion alias points at",
                  f"you wrote {data['champion']!r}; the registry says {champion}"),
        Criterion(str(data["challenger"]) == str(challenger),
                  "`challenger` is the version the challenger alias points at",
                  f"you wrote {data['challenger']!r}; the registry says {challenger}"),
        Criterion(str(data["raw_days"]) == str(days), "`raw_days` is the number of raw daily partitions",
                  f"you wrote {data['raw_days']!r}; {ctx.settings.raw_dir} holds {days}"),
        Criterion(auc is not None and close(data["champion_auc"], auc, rel=0, abs_tol=5e-4),
                  "`champion_auc` is the champion's holdout ROC AUC from its MLflow run (±0.0005)",
                  f"you wrote {data['champion_auc']!r}; MLflow logged {auc}"),
    ]


def check_02(ctx: Context) -> list[Criterion]:
    criteria = _day_criteria(ctx, SCORED_DAY, ctx.alias("champion"), "the champion")
    report = ctx.settings.reports_dir / f"ds={SCORED_DAY}" / "index.html"
    criteria.append(Criterion(report.exists(), f"the monitoring report reports/ds={SCORED_DAY}/index.html exists",
                              "found it" if report.exists() else f"no {report}"))
    return criteria


def check_03(ctx: Context) -> list[Criterion]:
    challenger, champion = ctx.alias("challenger"), ctx.alias("champion")
    pinned = Criterion(challenger is not None and challenger != champion,
                       "the challenger is a different version from the champion (so pinning shows)",
                       f"champion {champion}, challenger {challenger}")
    criteria = [pinned]
    for ds in BACKFILL_DAYS:
        criteria.extend(_day_criteria(ctx, ds, challenger, f"the pinned challenger version {challenger}"))
    run_ids = set()
    for ds in BACKFILL_DAYS:
        frame = _predictions(ctx, ds)
        if frame is not None:
            run_ids.update(frame["run_id"].astype(str))
    criteria.append(Criterion(len(run_ids) == len(BACKFILL_DAYS),
                              "each day was scored by its own run (a backfill makes one run per day)",
                              f"{len(run_ids)} distinct run id(s) over the three days"))
    if ctx.airflow_url:
        runs, found = ctx.airflow_runs("batch_score")
        covered = pinned_runs(runs or [], BACKFILL_DAYS, challenger)
        criteria.append(Criterion(runs is not None and covered == set(BACKFILL_DAYS),
                                  "Airflow's REST API lists a successful batch_score run for each day with "
                                  f"model_ref {challenger} in its conf",
                                  f"{found}; days covered: {sorted(covered) or 'none'}"))
    return criteria


def pinned_runs(runs: list[dict], days, version: str | None) -> set[str]:
    """Days among `days` that have a successful run (REST `dag_runs` entries) pinned to `version`."""
    covered = set()
    for run in runs:
        day = str(run.get("logical_date") or "")[:10]
        conf = run.get("conf") or {}
        if day in days and run.get("state") == "success" and str(conf.get("model_ref")) == str(version):
            covered.add(day)
    return covered
