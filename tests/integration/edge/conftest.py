"""One export of a registered version, shared by every edge integration test (TensorFlow is
imported once), and the moto server of the delivery tests for the S3 store."""

from __future__ import annotations

import pytest

from tests.integration.delivery.conftest import _moto_url, moto_server  # noqa: F401  (fixtures)
from tests.integration.edge.world import MODEL, register_version


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(home, export folder, report) of version 1 (a logistic-regression champion)."""
    from flightdeck.config import get_settings
    from flightdeck.edge.export import export_version
    from flightdeck.registry import Registry

    home = tmp_path_factory.mktemp("edge") / "flightdeck"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLIGHTDECK_HOME", str(home))
        # MLflow infers the ONNX model's pip requirements in a subprocess that imports MLflow
        # again (~10 s here); the edge export does not read them.
        patch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
        get_settings.cache_clear()
        try:
            version = register_version(home)
            out = home / "export"
            report = export_version(Registry.from_settings(), MODEL, "champion", out)
            yield home, out, report, version
        finally:
            get_settings.cache_clear()
