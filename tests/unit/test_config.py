from pathlib import Path

import pytest
from pydantic import ValidationError

from flightdeck.config import Settings, get_settings


def test_defaults_put_every_store_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIGHTDECK_HOME", str(tmp_path))
    settings = Settings()
    assert settings.home == tmp_path.resolve()
    assert settings.raw_dir == tmp_path.resolve() / "data" / "raw"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    assert settings.artifact_root == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()
    assert settings.dask_scheduler_address is None


def test_environment_variables_with_prefix_override_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIGHTDECK_HOME", str(tmp_path))
    monkeypatch.setenv("FLIGHTDECK_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("FLIGHTDECK_PROMOTION_MARGIN", "0.01")
    monkeypatch.setenv("FLIGHTDECK_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("PROMOTION_MARGIN", "0.5")  # no prefix: ignored
    settings = Settings()
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.promotion_margin == 0.01
    assert settings.raw_dir == (tmp_path / "elsewhere").resolve()


def test_the_shadow_queue_byte_bound_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIGHTDECK_HOME", str(tmp_path))
    assert Settings().shadow_queue_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("FLIGHTDECK_SHADOW_QUEUE_BYTES", "1048576")
    assert Settings().shadow_queue_bytes == 1024 * 1024


@pytest.mark.parametrize("name, value", [("FLIGHTDECK_PROMOTION_MARGIN", "-0.1"),
                                         ("FLIGHTDECK_HOLDOUT_FRACTION", "1.5"),
                                         ("FLIGHTDECK_MODEL_NAME", "bad name!"),
                                         ("FLIGHTDECK_SHADOW_QUEUE_BYTES", "0"),
                                         ("FLIGHTDECK_PREDLOG_QUEUE_BYTES", "-1")])
def test_malformed_settings_are_rejected_naming_the_field(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert name.removeprefix("FLIGHTDECK_").lower() in str(info.value)


def test_get_settings_is_cached_until_cleared(flightdeck_home: Path):
    assert get_settings() is get_settings()
    assert get_settings().home == flightdeck_home.resolve()
