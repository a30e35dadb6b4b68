"""Batch and experiments: each scored day with its drift verdict, each experiment's latest decision.

Both read the `report.json` each run writes beside its `index.html` under `Settings.reports_dir`
(`ds=YYYY-MM-DD/` for batch scoring, `experiments/<name>/ds=…/` for experiments,
`shadow/<endpoint>/ds=…/` for shadow evaluations). A report that cannot be read is listed with
the reason instead of hiding the day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScoredDay:
    ds: str
    model: str | None
    version: str | None
    rows: int | None
    drifted_features: list[str]
    score_drifted: bool
    alert: bool
    volume_alert: bool
    report: str  # the report's path relative to the reports folder
    problem: str | None = None


@dataclass(frozen=True)
class ExperimentView:
    name: str
    kind: str  # "experiment" or "shadow"
    ds: str
    action: str | None
    status: str | None
    reasons: list[str]
    report: str
    days: list[str] = field(default_factory=list)
    problem: str | None = None


def _partitions(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("ds=*") if p.is_dir() and (p / "report.json").exists()),
                  key=lambda p: p.name, reverse=True)


def _load(path: Path) -> tuple[dict, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as exc:
        return {}, f"{path.name} unreadable: {exc}"


def read_scored_days(reports_dir: Path, limit: int = 60) -> list[ScoredDay]:
    """The newest `limit` scored days, newest first."""
    days = []
    for folder in _partitions(reports_dir)[:limit]:
        facts, problem = _load(folder / "report.json")
        drift = facts.get("drift") or {}
        volume = facts.get("volume") or {}
        days.append(ScoredDay(
            ds=folder.name.removeprefix("ds="), model=facts.get("model_name"), version=facts.get("model_version"),
            rows=drift.get("n_rows") if isinstance(drift.get("n_rows"), int) else volume.get("rows"),
            drifted_features=list(drift.get("drifted_features") or []),
            score_drifted=bool(drift.get("score_drifted")), alert=bool(drift.get("alert")),
            volume_alert=bool(volume.get("alert")),
            report=(folder / "index.html").relative_to(reports_dir).as_posix(), problem=problem))
    return days


def batch_champion(days: list[ScoredDay]) -> dict | None:
    """{"model", "version", "ds"} of the newest scored day, for the Models view."""
    for day in days:
        if day.model and day.version:
            return {"model": day.model, "version": day.version, "ds": day.ds}
    return None


def _experiment(reports_dir: Path, folder: Path, kind: str) -> ExperimentView | None:
    partitions = _partitions(folder)
    if not partitions:
        return None
    latest = partitions[0]
    facts, problem = _load(latest / "report.json")
    decision = facts.get("decision") or facts.get("recommendation") or {}
    if isinstance(decision, str):
        decision = {"action": decision, "reasons": facts.get("reasons")}
    return ExperimentView(
        name=folder.name, kind=kind, ds=latest.name.removeprefix("ds="), action=decision.get("action"),
        status=decision.get("status"), reasons=[str(r) for r in decision.get("reasons") or []],
        report=(latest / "index.html").relative_to(reports_dir).as_posix(),
        days=[p.name.removeprefix("ds=") for p in partitions], problem=problem)


def read_experiments(reports_dir: Path) -> list[ExperimentView]:
    """Each experiment and each shadow evaluation with its newest report's decision."""
    out = []
    for kind, sub in (("experiment", "experiments"), ("shadow", "shadow")):
        root = reports_dir / sub
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            view = _experiment(reports_dir, folder, kind)
            if view is not None:
                out.append(view)
    return out


def report_file(reports_dir: Path, relative: str) -> Path:
    """A file under the reports folder named by a relative path; ValueError for anything outside it
    (`..`, absolute paths), FileNotFoundError when absent."""
    root = reports_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or relative.startswith("/"):
        raise ValueError(f"{relative!r} is outside the reports folder")
    if not target.is_file():
        raise FileNotFoundError(relative)
    return target
