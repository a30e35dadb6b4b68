"""The Cloud Functions and Azure Functions packages: deterministic, in the layout each platform
expects, verified by the shared fresh-process verifier, and the Cloud Functions one served by the
real `functions-framework` server on a loopback port, scoring like the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from flightdeck.devtools.launch import free_port, stop_process_group
from flightdeck.serverless.package import (
    AZURE,
    GCF,
    PackageTooLargeError,
    build_source_package,
    check_source_limits,
    extract,
)
from flightdeck.serverless.verify import gateway_scores, split_body, verify_package
from tests.support.models import onnx_model, records
from tests.support.poll import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    out = tmp_path_factory.mktemp("packages")
    return {name: build_source_package(onnx_model(1), "credit", "3", out / name, name) for name in ("gcf", "azure")}


def test_packages_are_deterministic_and_laid_out_for_their_host(packages, tmp_path):
    for name, built in packages.items():
        again = build_source_package(onnx_model(1), "credit", "3", tmp_path / name, name)
        assert again.code_sha256 == built.code_sha256, f"{name}: same inputs, same zip"
        with zipfile.ZipFile(built.zip_path) as archive:
            files = set(archive.namelist())
            requirements = archive.read("requirements.txt").decode().split()
        assert {"model.onnx", "model.json", "requirements.txt", "flightdeck/serverless/core.py"} <= files
        assert not any(f.startswith(("flightdeck/serving/app", "flightdeck/delivery")) for f in files)
        assert all("==" in line for line in requirements) and any(r.startswith("onnxruntime==") for r in requirements)
    with zipfile.ZipFile(packages["gcf"].zip_path) as archive:
        assert "main.py" in archive.namelist() and "flightdeck/serverless/gcf_handler.py" in archive.namelist()
    with zipfile.ZipFile(packages["azure"].zip_path) as archive:
        assert {"function_app.py", "host.json"} <= set(archive.namelist())
        assert json.loads(archive.read("host.json"))["extensions"]["http"]["routePrefix"] == ""


def test_limits_name_the_measured_size_and_where_the_limit_comes_from():
    check_source_limits(GCF, 100 * 2**20, 500 * 2**20, "p.zip")
    with pytest.raises(PackageTooLargeError, match=r"101.0 MB zipped .*Cloud Functions quotas"):
        check_source_limits(GCF, 101 * 2**20, 1, "p.zip")
    with pytest.raises(PackageTooLargeError, match=r"600.0 MB unzipped with its modules"):
        check_source_limits(AZURE, 1, 600 * 2**20, "p.zip")


@pytest.mark.parametrize("platform", ["gcf", "azure"])
def test_the_shared_verifier_runs_each_package_in_a_fresh_process(packages, platform):
    report = verify_package(packages[platform].zip_path, records(30), warm_calls=20)
    assert report.platform == platform
    assert report.max_abs_diff <= 1e-9 and report.rows == 30
    assert (report.bad_body_status, report.missing_field_status, report.missing_field) == (400, 422, "age")
    assert report.cold_start_s > 0 and report.peak_rss_mb > 0


@pytest.fixture(scope="module")
def functions_framework_server(packages, tmp_path_factory):
    root = extract(packages["gcf"].zip_path, tmp_path_factory.mktemp("gcf"))
    port = free_port()
    log = root.parent / "server.log"
    # The package's folder first on the path, as the platform's build lays it out: the served code
    # is the package's, not this checkout's.
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [str(Path(sys.executable).parent / "functions-framework"), "--target", "score", "--source",
               str(root / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"functions-framework exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return requests.post(f"{url}/invocations", data="{}", timeout=2).status_code == 400
        except requests.ConnectionError:
            return False

    try:
        eventually(up, timeout=60, what="functions-framework answering", detail=lambda: log.read_text()[-2000:])
        yield url
    finally:
        stop_process_group(process, timeout=10)


def test_the_real_functions_framework_server_scores_like_the_gateway(functions_framework_server):
    rows = records(40)
    expected = gateway_scores(onnx_model(1), split_body(rows))
    answer = requests.post(f"{functions_framework_server}/invocations", json=split_body(rows), timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["predictions"] == expected
    assert (answer.json()["model_name"], answer.json()["model_version"]) == ("credit", "3")
    bad = requests.post(f"{functions_framework_server}/invocations", data="{nope", timeout=30)
    missing = requests.post(f"{functions_framework_server}/invocations", timeout=30,
                            json={"dataframe_records": [{k: v for k, v in rows[0].items() if k != "age"}]})
    assert (bad.status_code, missing.status_code, missing.json()["field"]) == (400, 422, "age")
