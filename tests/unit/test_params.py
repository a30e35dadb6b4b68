from datetime import date

import pytest

from flightdeck.errors import ConfigError
from flightdeck.training.params import TrainParams

WINDOW = {"window_start": "2026-01-01", "window_end": "2026-01-31"}


def test_valid_params_get_defaults_from_settings():
    params = TrainParams.parse(WINDOW)
    assert params.window_start == date(2026, 1, 1)
    assert params.label_cutoff == date(2026, 1, 31)
    assert params.model_type == "logistic_regression"
    assert params.margin >= 0


def test_empty_values_from_the_ui_mean_default():
    assert TrainParams.parse({**WINDOW, "labels_as_of": None, "model_type": ""}).labels_as_of is None


@pytest.mark.parametrize("values, named", [
    ({**WINDOW, "margin": -0.1}, "margin"),
    ({"window_end": "2026-01-31"}, "window_start"),
    ({**WINDOW, "window_end": "2025-12-01"}, "window_end"),
    ({**WINDOW, "window_start": "not-a-date"}, "window_start"),
    ({**WINDOW, "model_type": "xgboost"}, "model_type"),
    ({**WINDOW, "holdout_fraction": 0.9}, "holdout_fraction"),
    ({**WINDOW, "surprise": 1}, "surprise"),
])
def test_bad_params_raise_config_error_naming_the_param(values, named):
    with pytest.raises(ConfigError) as info:
        TrainParams.parse(values)
    assert named in str(info.value)
    assert "Fix:" in str(info.value)
