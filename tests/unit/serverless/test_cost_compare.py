"""The cost model's four options: the price file (every price with its source and date), each
platform's billing rounding, the break-evens, and `flightdeck cost`'s table, text chart and SVG."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from flightdeck.cli import main
from flightdeck.errors import ConfigError
from flightdeck.serverless.cost import (
    PRICE_FILE,
    SERVERLESS,
    Prices,
    Workload,
    azure_monthly,
    break_even,
    break_evens,
    container_monthly,
    gcf_monthly,
    load_price_table,
)


def test_every_price_names_its_source_and_date_and_is_the_default():
    table = load_price_table()
    assert set(table) == {f.name for f in dataclasses.fields(Prices)}
    for key, entry in table.items():
        assert entry["source"].startswith("https://"), key
        assert len(str(entry["as_of"])) == 7, key  # YYYY-MM
        assert getattr(Prices(), key) == entry["usd"]


def test_a_price_file_without_a_price_or_a_source_is_refused(tmp_path):
    table = yaml.safe_load(PRICE_FILE.read_text())
    del table["gcf_request"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(table))
    with pytest.raises(ConfigError, match=r"lacks \['gcf_request'\]"):
        Prices.from_file(tmp_path / "p.yaml")
    table = yaml.safe_load(PRICE_FILE.read_text())
    table["azure_request"].pop("source")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(table))
    with pytest.raises(ConfigError, match="prices.azure_request"):
        Prices.from_file(tmp_path / "p.yaml")


def test_each_platform_rounds_the_billed_duration_its_own_way():
    fast, slow = Workload(latency_ms=5), Workload(latency_ms=100)
    assert gcf_monthly(1, fast) == gcf_monthly(1, slow)  # rounded up to 100 ms
    assert gcf_monthly(1, Workload(latency_ms=101)) > gcf_monthly(1, slow)
    assert azure_monthly(1, fast) == azure_monthly(1, slow)  # at least 100 ms
    assert azure_monthly(1, Workload(latency_ms=5, azure_memory_mb=129)) == \
        2 * azure_monthly(1, fast) - azure_monthly(1, Workload(latency_ms=5), Prices(azure_gb_second=0.0))


@pytest.mark.parametrize("option", sorted(SERVERLESS))
def test_each_break_even_is_where_its_line_meets_the_containers(option):
    work = Workload(latency_ms=5)
    even = break_even(work, option=option)
    monthly = SERVERLESS[option]
    assert even is not None
    assert monthly(even, work) == pytest.approx(container_monthly(even, work), rel=1e-9)
    assert monthly(even / 2, work) < container_monthly(even / 2, work)
    assert monthly(even * 2, work) > container_monthly(even * 2, work)


def test_no_break_even_when_the_containers_cost_more_per_request_at_any_rate():
    # At 20 ms a full 0.25 vCPU replica costs more per request than Azure's 100 ms minimum.
    work = Workload(latency_ms=20)
    assert break_even(work, option="Azure Functions") is None
    assert all(azure_monthly(r, work) < container_monthly(r, work) for r in (0.1, 10, 1000, 10_000))


def test_flightdeck_cost_prints_all_four_and_writes_the_same_svg_twice(tmp_path, capsys):
    args = ["cost", "--latency-ms", "5", "--png", "", "--svg"]
    assert main([*args, str(tmp_path / "a.svg")]) in (0, None)
    out = capsys.readouterr().out
    evens = break_evens(Workload(latency_ms=5))
    for option, value in evens.items():
        assert f"break-even {option} vs container: {value:.2f} req/s" in out
    assert "prices: prices.yaml (read 2025-01" in out and "# container" in out
    assert main([*args, str(tmp_path / "b.svg")]) in (0, None)
    first = (tmp_path / "a.svg").read_bytes()
    assert first.startswith(b"<?xml") and b"Cloud Functions" in first
    assert first == (tmp_path / "b.svg").read_bytes()


def test_a_price_flag_overrides_the_file(tmp_path, capsys):
    main(["cost", "--latency-ms", "5", "--png", "", "--request-price", "0"])
    out = capsys.readouterr().out
    assert "overridden on the command line: lambda_request" in out
