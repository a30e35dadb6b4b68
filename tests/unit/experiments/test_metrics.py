"""Reading the prediction log and outcomes into per-variant, per-unit, per-day sums."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import log_loss

from flightdeck.experiments.metrics import aggregate, den, num, read_experiment, read_rows
from flightdeck.serving import db
from flightdeck.serving.predlog import Outcome, OutcomeStore, PredictionRecord, _insert_rows


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    db.upgrade(url)
    yield db.engine_for(url)
    db.dispose_engine(url)


def _record(i, variant, score, unit, day, role="live"):
    return PredictionRecord(f"req{i}", 0, unit, "exp", variant, "1" if variant == "a" else "2", 1, role, "h", score,
                            4.0 + i, False, datetime(2026, 12, day, 12, tzinfo=UTC))


def test_rows_carry_the_latest_outcome_by_request_then_by_unit_and_keep_unlabelled_rows(engine):
    records = [_record(0, "a", 0.2, "u0", 1), _record(1, "b", 0.7, "u1", 1), _record(2, "b", 0.4, "u2", 2),
               _record(3, "a", 0.1, None, 2), _record(4, "b", 0.3, "u1", 2, role="shadow")]
    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(datetime.now(UTC), records)])
    t = datetime(2026, 12, 10, tzinfo=UTC)
    OutcomeStore(engine).record([Outcome("req0", None, 0.0, t), Outcome("req0", None, 1.0, t + timedelta(1)),
                                 Outcome(None, "u1", 1.0, t)])
    rows = read_rows(engine, "exp", datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))
    assert list(rows["request_id"]) == ["req0", "req1", "req2", "req3"]  # live only, oldest first
    assert rows["label"].tolist()[:2] == [1.0, 1.0] and np.isnan(rows["label"].iloc[2])
    data = aggregate(rows, ["a", "b"], threshold=0.5)
    assert data.rows_without_unit == 1 and data.days == [date(2026, 12, 1), date(2026, 12, 2)]
    units = data.units_through(date(2026, 12, 1))
    assert set(units["unit"]) == {"u0", "u1"}
    b = units.set_index("unit").loc["u1"]
    assert b[num("approval_rate")] == 0 and b[den("default_rate")] == 0  # not approved: no default-rate row
    assert b[num("log_loss")] == pytest.approx(log_loss([1], [0.7], labels=[0, 1]))
    assert data.model_versions == {"a": ["1"], "b": ["2"]}


def test_units_in_two_variants_and_unknown_variants_are_counted_not_used(engine):
    records = [_record(0, "a", 0.2, "u0", 1), _record(1, "b", 0.2, "u0", 1), _record(2, "c", 0.2, "u9", 1),
               _record(3, "a", 0.2, "u3", 1)]
    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(datetime.now(UTC), records)])
    data = read_experiment(engine, "exp", ["a", "b"], date(2026, 12, 1), date(2026, 12, 1), 0.5)
    assert data.units_in_several_variants == 1 and data.unexpected_variants == {"c": 1}
    assert data.units_through()["unit"].tolist() == ["u3"]


def test_log_loss_and_brier_match_scikit_learn(engine):
    from tests.unit.experiments.support import rows

    frame = rows(500, days=1)
    data = aggregate(frame, ["a", "b"], 0.5)
    units = data.units_through()
    labelled = frame.sort_values("unit_id")
    assert units[num("log_loss")].sum() / units[den("log_loss")].sum() == pytest.approx(
        log_loss(labelled["label"], labelled["score"]), rel=1e-12)
    assert units[num("brier")].sum() / len(frame) == pytest.approx(((frame["score"] - frame["label"]) ** 2).mean())
