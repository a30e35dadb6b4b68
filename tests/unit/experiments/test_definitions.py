"""Experiment definitions: the shipped examples validate; bad ones name the field."""

from __future__ import annotations

import pytest
import yaml

from flightdeck.errors import ConfigError
from flightdeck.experiments.definitions import experiments_dir, load_definition, parse_definition
from tests.unit.experiments.support import definition


@pytest.mark.parametrize("path", sorted(experiments_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_definition_is_valid(path):
    parsed = load_definition(path)
    assert abs(sum(parsed.weights.values()) - 1) < 1e-9
    assert parsed.control in parsed.variants and parsed.treatments


def test_the_examples_cover_an_ab_test_and_a_bandit():
    policies = {load_definition(p).policy for p in experiments_dir().glob("*.yaml")}
    assert {"sequential", "bandit"} <= policies
    assert load_definition("credit_ab.yaml").name == "credit-challenger-ab"  # bare names resolve


def _document(**changes):
    document = definition().model_dump(mode="json")
    document.update(changes)
    return document


@pytest.mark.parametrize("change, field, words", [
    ({"primary_metric": "revenue"}, "primary_metric", "unknown metric 'revenue'"),
    ({"secondary_metrics": ["approval_rate", "clicks"]}, "secondary_metrics[1]", "unknown metric 'clicks'"),
    ({"guardrails": ["p99"]}, "guardrails[0].metric", "unknown metric 'p99'"),
    ({"variants": {"a": {"alias": "champion", "weight": 0.5}, "b": {"alias": "challenger", "weight": 0.6}}},
     "variants", "weights must sum to 1, got 1.1"),
    ({"control": "z"}, "control", "'z' is not a variant"),
    ({"variants": {"a": {"alias": "champion", "version": "2", "weight": 1.0}}}, "variants", ""),
    ({"policy": "bandit"}, "primary_metric", "proportion as reward"),
    ({"promotion": {"endpoint": "credit", "colour": "blue"}}, "promotion", "['colour']"),
    ({"policy": "bandit", "primary_metric": "approval_rate", "guardrails": [], "secondary_metrics": []},
     "bandit.top_two_beta", "keeps the split at 50/50"),
])
def test_bad_definitions_name_the_field(change, field, words):
    with pytest.raises(ConfigError) as err:
        parse_definition(_document(**change), "experiment definition x.yaml")
    assert field in str(err.value) and words in str(err.value)
    assert "x.yaml" in str(err.value) and "Fix:" in str(err.value)


def test_a_missing_unit_is_rejected_by_name():
    document = _document()
    del document["unit"]
    with pytest.raises(ConfigError, match=r"unit: Field required"):
        parse_definition(document)


def test_shorthand_guardrails_and_unreadable_files(tmp_path):
    assert definition(guardrails=["latency_ms"]).guardrails[0].tolerance == 0
    with pytest.raises(ConfigError, match="does not exist"):
        load_definition("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_definition(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_definition(listed)


def test_an_arm_is_the_route_tables_model_reference():
    """An arm names its model exactly as a route-table variant does: alias or version, and a
    version pinned by an arm is a valid variant of an endpoint."""
    from flightdeck.serving.routes import ModelRef, VariantSpec

    parsed = definition(variants={"a": {"alias": "champion", "weight": 0.5},
                                  "b": {"version": "7", "model": "other", "weight": 0.5}})
    arm = parsed.variants["b"]
    assert isinstance(arm, ModelRef) and arm.ref == "7" and parsed.variants["a"].ref == "champion"
    variant = VariantSpec.model_validate(arm.model_dump(exclude={"weight"}, exclude_none=True))
    assert (variant.model, variant.ref) == ("other", "7")
    with pytest.raises(ConfigError, match=r"variants\.b.*version"):
        definition(variants={"a": {"alias": "champion", "weight": 0.5}, "b": {"version": "v7", "weight": 0.5}})
