"""Holm and Benjamini-Hochberg agree with statsmodels and with a hand computation."""

from __future__ import annotations

import pytest
from statsmodels.stats.multitest import multipletests

from flightdeck.errors import ConfigError
from flightdeck.experiments.multiple import adjust

P = {"latency": 0.012, "errors": 0.04, "conversion": 0.003, "revenue": 0.2, "clicks": 0.031}


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_matches_statsmodels(method):
    result = adjust(P, method=method, alpha=0.05)
    reject, adjusted, _, _ = multipletests(list(P.values()), alpha=0.05, method=method)
    assert list(result) == list(P)
    for (name, r), a, rej in zip(result.items(), adjusted, reject, strict=True):
        assert r.p_value == P[name]
        assert r.adjusted_p_value == pytest.approx(a, abs=1e-8)
        assert r.reject == rej


def test_holm_and_bh_by_hand():
    holm = adjust({"a": 0.01, "b": 0.04, "c": 0.03}, method="holm")
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert {k: v.adjusted_p_value for k, v in holm.items()} == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert [v.reject for v in holm.values()] == [True, False, False]
    bh = adjust({"a": 0.01, "b": 0.04, "c": 0.03}, method="fdr_bh")
    # 0.01*3/1, 0.03*3/2, 0.04*3/3 then running minimum from the top: 0.03, 0.04, 0.04
    assert {k: v.adjusted_p_value for k, v in bh.items()} == pytest.approx({"a": 0.03, "c": 0.04, "b": 0.04})
    assert all(v.reject for v in bh.values())


def test_empty_and_bad_input():
    assert adjust({}, method="holm") == {}
    with pytest.raises(ConfigError, match="p_values.x"):
        adjust({"x": 1.5}, method="holm")
    with pytest.raises(ConfigError, match="p_values.x"):
        adjust({"x": float("nan")}, method="fdr_bh")
    with pytest.raises(ConfigError, match="method"):
        adjust({"x": 0.5}, method="bonferroni")  # type: ignore[arg-type]
