"""benchmarks/batch_scoring.py still runs end to end and reports every ratio (on tiny data,
so the figures themselves mean nothing here and the targets are not checked)."""

from __future__ import annotations

import math

from tests.support.benchmarks import load_benchmark


def test_benchmark_reports_every_ratio_on_tiny_data(tmp_path, capsys):
    import mlflow

    tracking_uri = mlflow.get_tracking_uri()
    with load_benchmark("batch_scoring") as bench:
        report = bench.main(["--rows", "10000,20000", "--rows-per-file", "10000", "--workers", "2",
                             "--repeat", "1", "--train-rows", "2000", "--data-dir", str(tmp_path)])

    ratios = {(r["name"], r["model"], str(r["rows"])): r for r in report["ratios"]}
    expected = {(name, model, rows)
                for name in ("pct_of_ceiling", "over_mlflow", "speedup")
                for model in ("lr", "mlp") for rows in ("10000", "20000")}
    expected |= {(name, model, "20,000 vs 10,000")
                 for name in ("memory_worker", "memory_tree") for model in ("lr", "mlp")}
    assert set(ratios) == expected
    for ratio in ratios.values():
        assert ratio["value"] is not None and math.isfinite(ratio["value"]) and ratio["value"] > 0, ratio
        assert ratio["pass"] in (True, False)
    for m in report["measurements"]:
        assert min(m["single"], m["dask_1"], m["dask_n"], m["mlflow"]) > 0, m
        assert 0 < m["peak_worker"] < m["peak_tree"], m
    assert sorted((m["rows"], m["files"]) for m in report["measurements"]) == [
        (10_000, 1), (10_000, 1), (20_000, 2), (20_000, 2)]

    printed = capsys.readouterr().out
    assert printed.count("target ") == len(expected)
    assert "ceiling/s" in printed and "mlflow/s" in printed
    # Inputs stay cached for the next run; outputs and the MLflow store are cleaned up.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw-10000"]
    assert mlflow.get_tracking_uri() == tracking_uri, "the benchmark must not leak MLflow settings"
