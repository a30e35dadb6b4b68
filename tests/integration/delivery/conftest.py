"""AWS for delivery tests: a moto server on loopback, reached over real HTTP by boto3."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

import pytest

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its URL and clients pointed at it."""

    url: str

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.url)


@pytest.fixture(scope="session")
def _moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free port
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_server(_moto_url, monkeypatch, tmp_path) -> MotoServer:
    """A moto server with empty state, and an environment in which boto3 uses only it."""
    with urllib.request.urlopen(urllib.request.Request(f"{_moto_url}/moto-api/reset", method="POST"),
                                timeout=10) as reply:
        assert reply.status == 200
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", _moto_url)  # clients built without endpoint_url too
    # No profile or config of the machine may leak into a test.
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return MotoServer(_moto_url)
