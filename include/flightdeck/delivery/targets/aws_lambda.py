"""Roll a model out on AWS Lambda by moving a weighted alias between two published versions.

The baseline is the version the alias (e.g. `live`) points to before the rollout. `deploy()`
uploads the candidate's package to `$LATEST`, publishes it as a version whose Description
names the model (`flightdeck model=<name> version=<v>`) and leaves the alias on the baseline;
`set_weight(p)` gives the candidate `p` % through the alias's RoutingConfig; `promote()`
points the alias at the candidate; `rollback()` points it back at the baseline. AWS allows
at most one additional version on an alias, both published (never `$LATEST`), with a weight
in [0, 1): hence `set_weight(100)` is `promote()` and `set_weight(0)` clears the routing.

Only boto3 here (no Airflow). A task builds the target from `to_dict()` of an earlier task,
so every method reads the alias first and writes only what differs from the plan.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import math
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.errors import ConfigError, FlightdeckError

# Lambda quotas (docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_DIRECT_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
MAX_DESCRIPTION_CHARS = 256
_VERSION = re.compile(r"^[0-9]+$")
_WEIGHT_DIGITS = 6  # weights are stored rounded so that re-reading compares equal

log = logging.getLogger(__name__)


class LambdaTargetError(FlightdeckError):
    """A Lambda rollout cannot proceed; the message names the function, alias or package."""


class LambdaFunctionNotFoundError(LambdaTargetError):
    def __init__(self, function_name: str, qualifier: str | None = None) -> None:
        self.function_name = function_name
        self.qualifier = qualifier
        what = f"version {qualifier} of function {function_name!r}" if qualifier else f"function {function_name!r}"
        super().__init__(
            f"{what} does not exist in this account/region. Fix: create it first "
            "(terraform module `lambda`, or the serverless_package DAG) or correct the name/region.")


class LambdaAliasNotFoundError(LambdaTargetError):
    def __init__(self, function_name: str, alias: str) -> None:
        self.function_name = function_name
        self.alias = alias
        super().__init__(
            f"function {function_name!r} has no alias {alias!r}. Fix: create the alias on the version "
            f"serving today (aws lambda create-alias --function-name {function_name} --name {alias} "
            "--function-version <N>) or pass the right alias name.")


class CandidateIsBaselineError(LambdaTargetError):
    def __init__(self, function_name: str, alias: str, version: str, detail: str) -> None:
        self.version = version
        super().__init__(
            f"{function_name}:{alias}: the candidate is version {version}, which is already the baseline "
            f"({detail}); there is nothing to roll out. Fix: package a different model version, or, "
            "if the rollout already finished, start the next one from the new baseline.")


class CandidateNotDeployedError(LambdaTargetError):
    def __init__(self, function_name: str, description: str) -> None:
        super().__init__(
            f"function {function_name!r} has no published version described {description!r}. "
            "Fix: run deploy() (the promotion DAG's deploy task) before moving traffic.")


class LambdaPackageError(LambdaTargetError):
    """The candidate's deployment package is missing, malformed or over Lambda's limits."""


class LambdaPackageChangedError(LambdaPackageError):
    """The zip's bytes are not the ones its recorded digest (`zip_sha256`) names."""

    def __init__(self, origin: str, expected: str, found: str) -> None:
        self.origin, self.expected, self.found = origin, expected, found
        super().__init__(
            f"the Lambda package {origin} has CodeSha256 {found}, not {expected} as recorded when it was "
            "verified (or first uploaded): the file changed since, and nothing was uploaded. Fix: rebuild "
            "and verify the package again (re-run the serverless_package DAG from its package task) and "
            "find what wrote to the file.")


class LambdaUpdateFailedError(LambdaTargetError):
    """Lambda did not finish applying new code (LastUpdateStatus Failed, or a timeout)."""


def describe_candidate(model_name: str, model_version: str) -> str:
    """The Description a published version carries: how the rollout recognises its candidate."""
    return f"flightdeck model={model_name} version={model_version}"


def _code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


class LambdaAliasTarget:
    """A weighted Lambda alias as a `DeliveryTarget`.

    Args:
        client: a boto3 Lambda client, or a zero-argument callable returning one (built on
            first use); None means `boto3.client("lambda", region_name=region)`.
        function_name: the function (name or ARN without qualifier).
        alias: the alias callers invoke, e.g. `live`.
        model_name, model_version: the candidate's identity, written into the published
            version's Description.
        zip_file: the candidate's package as a zip file path or its bytes (direct upload, up
            to 50 MB); or instead `s3_bucket` + `s3_key` (+ `s3_object_version`); or
            `use_published=True` when the candidate was published earlier (the
            serverless_package DAG): `deploy()` then finds it by its Description.
        zip_sha256: the zip's expected CodeSha256 (base64 of its SHA-256, as Lambda and the
            packager report it), e.g. the digest serverless_package verified. Every read of the
            zip is checked against it; other bytes raise LambdaPackageChangedError before any
            upload. A zip without it is still accepted (a package given by hand, in code or a
            test): its first read then pins the digest, so `to_dict()` records the bytes that
            were uploaded and a target rebuilt from that record refuses any others. Promotions
            never upload a zip (they roll out the version serverless_package published), so the
            release policy has nothing to require here.
        baseline: the version serving before the rollout; None reads it from the alias on
            first use. `to_dict()` records it, so later tasks keep the same baseline even
            after the alias has moved.
        candidate_version: the published candidate version, when already known.
        name: the target's name in `TrafficState`.
        update_timeout: seconds to wait for Lambda to apply new code.
    """

    def __init__(self, client: Any = None, *, function_name: str, alias: str, model_name: str,
                 model_version: str | int, zip_file: bytes | str | os.PathLike | None = None,
                 zip_sha256: str | None = None,
                 s3_bucket: str | None = None, s3_key: str | None = None,
                 s3_object_version: str | None = None, baseline: str | int | None = None,
                 candidate_version: str | int | None = None, name: str | None = None,
                 region: str | None = None, update_timeout: float = 300.0,
                 poll_seconds: float = 1.0, use_published: bool = False) -> None:
        if not function_name:
            raise ConfigError("function_name", "is empty", "name the Lambda function to roll out on")
        if not alias or _VERSION.match(alias) or alias == "$LATEST":
            raise ConfigError("alias", f"{alias!r} is not an alias name",
                              "name the alias callers invoke, e.g. 'live'")
        given = (zip_file is not None) + (s3_bucket is not None or s3_key is not None) + bool(use_published)
        if given != 1 or (s3_bucket is None) != (s3_key is None):
            raise ConfigError("package", "give exactly one of zip_file or s3_bucket + s3_key (or use_published)",
                              "pass the candidate's Lambda zip, where it lies in S3, or use_published=True "
                              "for a version the serverless_package DAG published")
        if zip_sha256 is not None:
            if zip_file is None:
                raise ConfigError("zip_sha256", "checks a zip_file, and no zip_file was given",
                                  "pass zip_sha256 together with zip_file, or leave it out")
            zip_sha256 = _check_code_sha256(zip_sha256)
        self.use_published = bool(use_published)
        self.function_name = function_name
        self.alias = alias
        self.model_name = str(model_name)
        self.model_version = str(model_version)
        self.description = describe_candidate(self.model_name, self.model_version)
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            raise ConfigError("model_name", f"the version description is {len(self.description)} "
                              f"characters, over Lambda's {MAX_DESCRIPTION_CHARS}", "use a shorter model name")
        self.zip_file = zip_file
        self.zip_sha256 = zip_sha256
        self.s3_bucket, self.s3_key, self.s3_object_version = s3_bucket, s3_key, s3_object_version
        self._baseline = self._version_or_none(baseline, "baseline")
        self._candidate = self._version_or_none(candidate_version, "candidate_version")
        self.name = name or f"lambda:{function_name}:{alias}"
        self.left_alone: str | None = None  # why the last rollback changed nothing, if it chose not to
        self.region = region
        self.update_timeout = update_timeout
        self.poll_seconds = poll_seconds
        self._client_arg = client
        self._client: Any = None

    # -- construction across processes ---------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-safe description from which `from_dict` rebuilds this target in another process."""
        if isinstance(self.zip_file, bytes | bytearray):
            raise ConfigError("zip_file", "a package given as bytes cannot be carried to another process",
                              "pass the zip as a file path, or upload it to S3 and pass s3_bucket/s3_key")
        package = ({"zip_file": str(self.zip_file), "zip_sha256": self.zip_sha256} if self.zip_file is not None else
                   {"use_published": True} if self.use_published else
                   {"s3_bucket": self.s3_bucket, "s3_key": self.s3_key,
                    "s3_object_version": self.s3_object_version})
        return {"kind": "aws_lambda", "name": self.name, "function_name": self.function_name,
                "alias": self.alias, "model_name": self.model_name, "model_version": self.model_version,
                **package, "baseline": self.baseline, "candidate_version": self._candidate,
                "region": self.region or getattr(getattr(self.client, "meta", None), "region_name", None),
                "update_timeout": self.update_timeout}

    @classmethod
    def from_dict(cls, data: dict, client: Any = None) -> LambdaAliasTarget:
        """Rebuild a target from `to_dict()`; `client` as in the constructor."""
        fields = dict(data)
        kind = fields.pop("kind", "aws_lambda")
        if kind != "aws_lambda":
            raise ConfigError("kind", f"{kind!r} is not an aws_lambda target", "pass LambdaAliasTarget.to_dict()")
        return cls(client, **fields)

    @property
    def client(self) -> Any:
        if self._client is None:
            arg = self._client_arg
            if arg is None:
                import boto3

                arg = boto3.client("lambda", region_name=self.region)
            elif callable(arg) and not hasattr(arg, "get_alias"):
                arg = arg()
            self._client = arg
        return self._client

    @property
    def baseline(self) -> str:
        """The version serving before the rollout (read from the alias once, then kept)."""
        if self._baseline is None:
            version = self._get_alias()["FunctionVersion"]
            if not _VERSION.match(version):
                raise LambdaTargetError(
                    f"{self.function_name}:{self.alias} points to {version}, not a published version; "
                    "a weighted alias needs published versions on both sides. Fix: publish a version "
                    f"(aws lambda publish-version --function-name {self.function_name}) and point the "
                    "alias at it, or pass baseline=<N>.")
            self._baseline = version
        return self._baseline

    @property
    def candidate_version(self) -> str | None:
        """The published candidate version, if deploy() has run.

        Known after deploy() (and carried by `to_dict()`); otherwise the newest published
        version with the candidate's Description (the package itself may not be readable
        from this process).
        """
        if self._candidate is None:
            self._candidate = self._find_published(None)
        return self._candidate

    def variant_names(self) -> tuple[str, str]:
        """(baseline, candidate) as the metrics name them: CloudWatch's `ExecutedVersion`."""
        return self.baseline, self._require_candidate()

    # -- the DeliveryTarget protocol -----------------------------------------------------

    def state(self) -> TrafficState:
        """What the alias serves now, in terms of this rollout's baseline and candidate."""
        alias = self._get_alias()
        primary = alias["FunctionVersion"]
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        extra, weight = next(iter(weights.items()), (None, 0.0))
        baseline, candidate = self.baseline, self.candidate_version
        if primary == baseline or primary != candidate:
            # On the baseline (or on a version this rollout does not know): the extra version,
            # if any, is the one being tried.
            shown = baseline if primary == baseline else primary
            return TrafficState(self.name, shown, extra or candidate, round(100 * float(weight), 4))
        share = 100 * (1 - float(weight)) if extra == baseline else 100.0
        return TrafficState(self.name, baseline, candidate, round(share, 4))

    def deploy(self) -> TrafficState:
        """Publish the candidate (once) and leave the alias wholly on the baseline."""
        baseline = self.baseline
        self._require_version(baseline)
        if self.use_published:
            candidate = self._find_published(None)
            if candidate is None:
                raise CandidateNotDeployedError(self.function_name, self.description)
        else:
            # The zip is read (and checked) once: the bytes looked up are the bytes uploaded.
            data = self._zip_bytes() if self.zip_file is not None else None
            candidate = self._find_published(_code_sha256(data)) if data is not None else None
            if candidate is None:
                candidate = self._publish_candidate(data)
        if candidate == baseline:
            raise CandidateIsBaselineError(self.function_name, self.alias, candidate,
                                           f"its package and description match {self.description!r}")
        self._candidate = candidate
        self._set_alias(baseline, {})
        return self.state()

    def set_weight(self, percent: float) -> TrafficState:
        """`percent` of invocations through the alias go to the candidate, the rest to the baseline."""
        percent = _check_percent(percent)
        if percent >= 100:
            return self.promote()
        baseline = self.baseline
        if percent == 0:
            self._set_alias(baseline, {})
        else:
            candidate = self._require_candidate()
            # Lambda wants a weight below 1: 99.99999 % must not round up to 1.0.
            weight = min(round(percent / 100, _WEIGHT_DIGITS), 1 - 10 ** -_WEIGHT_DIGITS)
            self._set_alias(baseline, {candidate: weight})
        return self.state()

    def promote(self) -> TrafficState:
        """The alias points at the candidate alone."""
        self._set_alias(self._require_candidate(), {})
        return self.state()

    def rollback(self) -> TrafficState:
        """The alias points at the baseline alone, but only while it still points at what this
        rollout set (its baseline and candidate): after a later rollout moved the alias, a re-run
        rollback leaves it alone and says why in `left_alone`."""
        self.left_alone = None
        alias = self._get_alias()
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        serving = {alias["FunctionVersion"], *weights}
        ours = {self.baseline, self.candidate_version} - {None}
        if not serving <= ours:
            self.left_alone = (f"{self.function_name}:{self.alias} now serves versions {sorted(serving)}, not "
                               f"this rollout's {sorted(ours)}: a later change owns it, so the rollback "
                               "leaves it as it is")
            log.warning("%s", self.left_alone)
            return self.state()
        self._set_alias(self.baseline, {})
        return self.state()

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _version_or_none(value: str | int | None, field: str) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not _VERSION.match(text):
            raise ConfigError(field, f"{text!r} is not a published Lambda version number",
                              "pass a version number such as '3' (never $LATEST)")
        return text

    def _error_code(self, exc: Exception) -> str | None:
        response = getattr(exc, "response", None)
        return (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None

    def _get_alias(self) -> dict:
        try:
            return self.client.get_alias(FunctionName=self.function_name, Name=self.alias)
        except Exception as exc:
            if self._error_code(exc) != "ResourceNotFoundException":
                raise
        self._require_version(None)  # tells a missing function apart from a missing alias
        raise LambdaAliasNotFoundError(self.function_name, self.alias)

    def _require_version(self, qualifier: str | None) -> dict:
        """The configuration of `$LATEST` (or of version `qualifier`); typed error if absent."""
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        try:
            return self.client.get_function_configuration(FunctionName=self.function_name, **kwargs)
        except Exception as exc:
            if self._error_code(exc) == "ResourceNotFoundException":
                raise LambdaFunctionNotFoundError(self.function_name, qualifier) from None
            raise

    def _require_candidate(self) -> str:
        candidate = self.candidate_version
        if candidate is None:
            raise CandidateNotDeployedError(self.function_name, self.description)
        if candidate == self.baseline:
            raise CandidateIsBaselineError(self.function_name, self.alias, candidate,
                                           f"described {self.description!r}")
        return candidate

    def _set_alias(self, version: str, weights: dict[str, float]) -> None:
        """Make the alias serve `version` plus `weights`; no call when it already does."""
        current = self._get_alias()
        now = (current.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        same = (current["FunctionVersion"] == version and set(now) == set(weights)
                and all(math.isclose(float(now[k]), weights[k], abs_tol=1e-9) for k in weights))
        if same:
            return
        try:
            self.client.update_alias(FunctionName=self.function_name, Name=self.alias, FunctionVersion=version,
                                     RoutingConfig={"AdditionalVersionWeights": weights},
                                     RevisionId=current["RevisionId"])
        except Exception as exc:
            if self._error_code(exc) == "PreconditionFailedException":
                raise LambdaTargetError(
                    f"{self.function_name}:{self.alias} changed while this rollout was updating it. "
                    "Fix: make sure one rollout at a time owns the alias, then retry the task.") from exc
            if self._error_code(exc) == "ResourceNotFoundException":
                for needed in {version, *weights}:
                    self._require_version(needed)
            raise

    def _zip_bytes(self) -> bytes:
        """The zip package, checked against `zip_sha256` (pinned by this first read when not
        given) and against Lambda's direct-upload limits."""
        if isinstance(self.zip_file, bytes | bytearray):
            data, origin = bytes(self.zip_file), "the zip given as bytes"
        else:
            path = Path(self.zip_file)
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise LambdaPackageError(f"cannot read the Lambda package {path}: {exc.strerror}. "
                                         "Fix: build it first (serverless_package DAG) or correct the path.") from None
            self._check_zipped_size(size, str(path))
            data, origin = path.read_bytes(), str(path)
        self._check_zipped_size(len(data), origin)
        found = _code_sha256(data)
        if self.zip_sha256 is not None and found != self.zip_sha256:
            raise LambdaPackageChangedError(origin, self.zip_sha256, found)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                unzipped = sum(info.file_size for info in archive.infolist())
        except zipfile.BadZipFile:
            raise LambdaPackageError(f"{origin} is not a zip archive. Fix: pass the .zip the "
                                     "packager built (flightdeck.serverless).") from None
        if unzipped > MAX_UNZIPPED_BYTES:
            raise LambdaPackageError(
                f"{origin} unzips to {_mb(unzipped)}, over Lambda's {_mb(MAX_UNZIPPED_BYTES)} limit for "
                "zip packages. Fix: trim the package (strip tests, use the ONNX runtime only) or ship "
                "a container image (up to 10 GB).")
        self.zip_sha256 = found  # pins a zip given without a digest to the bytes read now
        return data

    def _check_zipped_size(self, size: int, origin: str) -> None:
        if size > MAX_DIRECT_UPLOAD_BYTES:
            raise LambdaPackageError(
                f"{origin} is {_mb(size)} zipped, over Lambda's {_mb(MAX_DIRECT_UPLOAD_BYTES)} limit "
                "for direct upload. Fix: upload it to S3 and pass s3_bucket/s3_key, or ship a "
                "container image.")

    def _published_versions(self) -> list[dict]:
        pages = self.client.get_paginator("list_versions_by_function").paginate(FunctionName=self.function_name)
        try:
            return [v for page in pages for v in page["Versions"] if _VERSION.match(v["Version"])]
        except Exception as exc:
            if self._error_code(exc) == "ResourceNotFoundException":
                raise LambdaFunctionNotFoundError(self.function_name) from None
            raise

    def _find_published(self, sha: str | None) -> str | None:
        """The newest published version with our Description (and CodeSha256, when known)."""
        matches = [int(v["Version"]) for v in self._published_versions()
                   if v.get("Description") == self.description and (sha is None or v.get("CodeSha256") == sha)]
        return str(max(matches)) if matches else None

    def _publish_candidate(self, data: bytes | None) -> str:
        """Upload the package (`data`, the checked zip; None: the S3 object) to $LATEST, wait
        until Lambda has applied it, publish a version."""
        code: dict[str, Any]
        if data is not None:
            code = {"ZipFile": data}
        else:
            code = {"S3Bucket": self.s3_bucket, "S3Key": self.s3_key}
            if self.s3_object_version:
                code["S3ObjectVersion"] = self.s3_object_version
        self._wait_until_updated()  # a function still applying an earlier update rejects new code
        try:
            self.client.update_function_code(FunctionName=self.function_name, **code)
        except Exception as exc:
            code_name = self._error_code(exc)
            if code_name == "ResourceNotFoundException":
                raise LambdaFunctionNotFoundError(self.function_name) from None
            if code_name in ("InvalidParameterValueException", "RequestEntityTooLargeException"):
                raise LambdaPackageError(f"Lambda rejected the package for {self.function_name!r}: "
                                         f"{exc}. Fix: check the zip / S3 object named in the target.") from exc
            raise
        sha = self._wait_until_updated()["CodeSha256"]
        existing = self._find_published(sha)  # an S3 package already published earlier
        if existing is not None:
            return existing
        published = self.client.publish_version(FunctionName=self.function_name, CodeSha256=sha,
                                                Description=self.description)
        version = published["Version"]
        if published.get("Description") != self.description:
            # Lambda publishes nothing when $LATEST equals the newest version; it returns that one.
            if version == self.baseline:
                raise CandidateIsBaselineError(self.function_name, self.alias, version,
                                               "the candidate's package is byte-identical to it")
            raise LambdaTargetError(
                f"Lambda returned version {version} ({published.get('Description')!r}) instead of publishing "
                f"{self.description!r}: the package is identical to that version. Fix: package the "
                "candidate model version, not an earlier one.")
        return version

    def _wait_until_updated(self) -> dict:
        """Poll the function until no update is in progress; its configuration."""
        deadline = time.monotonic() + self.update_timeout
        while True:
            config = self._require_version(None)
            state, status = config.get("State"), config.get("LastUpdateStatus")
            if state == "Failed" or status == "Failed":
                reason = config.get("LastUpdateStatusReason") or config.get("StateReason") or "no reason given"
                raise LambdaUpdateFailedError(
                    f"Lambda failed to apply code to {self.function_name!r}: {reason}. Fix: correct the "
                    "package (handler, runtime, size) and run deploy() again.")
            if state != "Pending" and status != "InProgress":
                return config
            if time.monotonic() > deadline:
                raise LambdaUpdateFailedError(
                    f"{self.function_name!r} is still updating after {self.update_timeout:.0f} s "
                    f"(State={state}, LastUpdateStatus={status}). Fix: retry the task later, or raise "
                    "update_timeout.")
            time.sleep(self.poll_seconds)


def _check_code_sha256(value: object) -> str:
    """`value` if it reads as a CodeSha256 (base64 of 32 bytes); ConfigError otherwise."""
    try:
        ok = isinstance(value, str) and len(base64.b64decode(value, validate=True)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError("zip_sha256", f"{value!r} is not a CodeSha256 (base64 of a SHA-256)",
                          "pass the digest the packager recorded (PackageResult.code_sha256)")
    return value


def _check_percent(percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent) \
            or not 0 <= percent <= 100:
        raise ConfigError("percent", f"{percent!r} is not a share between 0 and 100",
                          "pass the candidate's share of traffic in percent, e.g. 25")
    return float(percent)
