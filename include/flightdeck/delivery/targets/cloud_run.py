"""Split traffic between two revisions of a Cloud Run service (a 2nd gen Cloud Function runs on
one) through the Cloud Run Admin API v2.

The baseline is the revision serving all traffic when the rollout starts; the candidate is the
revision deployed for the candidate model version, found by its labels
(`flightdeck-model`, `flightdeck-version`, which the deployment sets on the revision template)
or named outright. Every method reads the service (`services.get`), computes the `traffic[]`
it wants, and only when that differs sends `services.patch` with `updateMask=traffic` and the
service's `etag` (a concurrent edit fails instead of being overwritten), then waits for the
long-running operation it returns (`operations.get`) to finish. The candidate carries the tag
`candidate`, so it has its own URL for smoke tests even at 0 %.

Cloud Run takes whole percents; `set_weight(100)` is `promote()`. Only `requests` and,
when no token is given, google-auth's application default credentials (no Airflow).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.delivery.targets.rest import ApiError, BearerRest
from flightdeck.errors import ConfigError, FlightdeckError

API_BASE = "https://run.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
MODEL_LABEL, VERSION_LABEL = "flightdeck-model", "flightdeck-version"
CANDIDATE_TAG = "candidate"

log = logging.getLogger(__name__)


class CloudRunTargetError(FlightdeckError):
    """A Cloud Run rollout cannot proceed; the message names the service or revision and the fix."""


class CloudRunNotFoundError(CloudRunTargetError):
    pass


class CloudRunConflictError(CloudRunTargetError):
    pass


def short_name(revision: str | None) -> str | None:
    """`projects/p/locations/l/services/s/revisions/r` -> `r` (traffic[] uses short names)."""
    return revision.rpartition("/")[2] if revision else revision


def _whole_percent(percent: float) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100 \
            or percent != int(percent):
        raise ConfigError("percent", f"{percent!r} is not a whole percent between 0 and 100",
                          "Cloud Run splits traffic in whole percents: pass e.g. 5, 25 or 50")
    return int(percent)


class CloudRunTarget(BearerRest):
    """Two revisions of a Cloud Run service as a `DeliveryTarget`.

    Args:
        project, location, service: the service (for a 2nd gen function: the function's name).
        model_name, model_version: the candidate model version, matched against the revisions'
            labels when `candidate_revision` is not given.
        baseline_revision: the revision serving before the rollout; None reads it from the
            service's traffic on first use (`to_dict()` records it for later tasks).
        candidate_revision: the candidate's revision, when known.
        token: an OAuth access token, or a callable returning one; None uses google-auth's
            application default credentials.
        api_base: the API's root (a regional endpoint, or a fake in tests).
        session: a `requests.Session` (None: a new one).
    """

    def __init__(self, *, project: str, location: str, service: str, model_name: str, model_version: str | int,
                 baseline_revision: str | None = None, candidate_revision: str | None = None,
                 token: str | Callable[[], str] | None = None, api_base: str = API_BASE, session: Any = None,
                 name: str | None = None, poll_seconds: float = 1.0, operation_timeout: float = 600.0) -> None:
        for field, value in (("project", project), ("location", location), ("service", service)):
            if not value or "/" in str(value):
                raise ConfigError(field, f"{value!r} is not a Cloud Run {field} id", f"pass the service's {field}")
        self.project, self.location, self.service = project, location, service
        self.model_name, self.model_version = str(model_name), str(model_version)
        self._baseline = short_name(baseline_revision)
        self._candidate = short_name(candidate_revision)
        self.token = token
        self.api_base = api_base.rstrip("/")
        self.name = name or f"cloud_run:{project}/{location}/{service}"
        self.poll_seconds = poll_seconds
        self.operation_timeout = operation_timeout
        self.left_alone: str | None = None
        self._session = session

    # -- construction across processes ---------------------------------------------------

    def to_dict(self) -> dict:
        return {"kind": "cloud_run", "project": self.project, "location": self.location, "service": self.service,
                "model_name": self.model_name, "model_version": self.model_version,
                "baseline_revision": self.baseline, "candidate_revision": self._candidate,
                "api_base": self.api_base, "name": self.name, "operation_timeout": self.operation_timeout}

    @classmethod
    def from_dict(cls, data: dict, token: str | Callable[[], str] | None = None, session: Any = None) -> CloudRunTarget:
        fields = dict(data)
        kind = fields.pop("kind", "cloud_run")
        if kind != "cloud_run":
            raise ConfigError("kind", f"{kind!r} is not a cloud_run target", "pass CloudRunTarget.to_dict()")
        return cls(**fields, token=token, session=session)

    # -- HTTP ------------------------------------------------------------------------------

    def default_token(self) -> str:
        """google-auth's application default credentials, refreshed."""
        try:
            import google.auth
            import google.auth.transport.requests
        except ImportError:  # pragma: no cover - google-auth is in the lock
            raise ConfigError("token", "no token given and google-auth is not installed",
                              "pass an access token or install google-auth") from None
        credentials, _ = google.auth.default(scopes=[SCOPE])
        credentials.refresh(google.auth.transport.requests.Request())
        return credentials.token

    @property
    def service_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/services/{self.service}"

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        return self.send(method, f"{self.api_base}/v2/{path}", lambda e: self._error(method, path, e), **kwargs).json()

    def _error(self, method: str, path: str, error: ApiError) -> CloudRunTargetError:
        if error.status == 404:
            return CloudRunNotFoundError(f"{path} does not exist ({error.message}). Fix: deploy the function / service "
                                         "first (terraform module cloud_function) or correct project, location and "
                                         "service.")
        if error.status in (409, 412):
            return CloudRunConflictError(f"{self.service_path} changed while this rollout was updating it "
                                         f"({error.message}). Fix: make sure one rollout at a time owns the service, "
                                         "then retry the task.")
        if error.status in (401, 403):
            return CloudRunTargetError(f"Cloud Run refused {method} {path} ({error.status}: {error.message}). Fix: "
                                       "grant the caller roles/run.developer on the service (and "
                                       "roles/iam.serviceAccountUser on its runtime service account).")
        return CloudRunTargetError(f"Cloud Run answered {error.status} to {method} {path}: {error.message}")

    def _get_service(self) -> dict:
        return self._call("GET", self.service_path)

    def _wait(self, operation: dict) -> dict:
        deadline = time.monotonic() + self.operation_timeout
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise CloudRunTargetError(f"operation {operation.get('name')} on {self.service_path} is not done after "
                                          f"{self.operation_timeout:.0f} s. Fix: look at the service's revisions in "
                                          "the console, then retry the task.")
            time.sleep(self.poll_seconds)
            operation = self._call("GET", operation["name"])
        if operation.get("error"):
            error = operation["error"]
            raise CloudRunTargetError(f"Cloud Run failed to update {self.service_path}: {error.get('message')} "
                                      f"(code {error.get('code')}). Fix: check that both revisions are ready.")
        return operation.get("response") or {}

    # -- revisions ---------------------------------------------------------------------------

    @staticmethod
    def _serving(service: dict) -> dict[str, int]:
        """{revision: percent} of the service's traffic, LATEST resolved to its ready revision."""
        serving: dict[str, int] = {}
        for target in service.get("traffic") or []:
            percent = int(target.get("percent") or 0)
            revision = target.get("revision") if target.get("type", REVISION) == REVISION else \
                short_name(service.get("latestReadyRevision"))
            if revision and percent:
                serving[short_name(revision)] = serving.get(short_name(revision), 0) + percent
        return serving

    @property
    def baseline(self) -> str:
        """The revision with all the traffic when first read (then kept)."""
        if self._baseline is None:
            serving = self._serving(self._get_service())
            if len(serving) != 1:
                raise CloudRunTargetError(
                    f"{self.service_path} splits its traffic {serving}: a rollout starts from one revision with "
                    "all of it. Fix: finish or roll back the rollout in progress, or pass baseline_revision.")
            self._baseline = next(iter(serving))
        return self._baseline

    @property
    def candidate_revision(self) -> str | None:
        """The candidate's revision: given, or the newest ready revision labelled with its version."""
        if self._candidate is None:
            found = []
            page = None
            while True:
                listing = self._call("GET", f"{self.service_path}/revisions",
                                     params={"pageToken": page} if page else None)
                for revision in listing.get("revisions") or []:
                    labels = revision.get("labels") or {}
                    if labels.get(MODEL_LABEL) == self.model_name and labels.get(VERSION_LABEL) == self.model_version:
                        found.append(revision)
                page = listing.get("nextPageToken")
                if not page:
                    break
            ready = [r for r in found if self._ready(r)]
            if ready:
                self._candidate = short_name(max(ready, key=lambda r: r.get("createTime", ""))["name"])
        return self._candidate

    @staticmethod
    def _ready(revision: dict) -> bool:
        conditions = {c.get("type"): c.get("state") for c in revision.get("conditions") or []}
        return not revision.get("reconciling") and conditions.get("Ready", "CONDITION_SUCCEEDED") == "CONDITION_SUCCEEDED"

    def _require_candidate(self) -> str:
        candidate = self.candidate_revision
        if candidate is None:
            raise CloudRunTargetError(
                f"{self.service_path} has no ready revision labelled {MODEL_LABEL}={self.model_name}, "
                f"{VERSION_LABEL}={self.model_version}. Fix: deploy the candidate's package as a new revision with "
                "those labels (and no traffic), or pass candidate_revision.")
        if candidate == self.baseline:
            raise CloudRunTargetError(f"the candidate revision {candidate} is the baseline already: nothing to roll "
                                      "out. Fix: deploy the candidate model version as a new revision.")
        return candidate

    def variant_names(self) -> tuple[str, str]:
        return self.baseline, self._require_candidate()

    # -- traffic -----------------------------------------------------------------------------

    def _traffic(self, baseline_percent: int) -> list[dict]:
        candidate = self._require_candidate()
        return [{"type": REVISION, "revision": self.baseline, "percent": baseline_percent},
                {"type": REVISION, "revision": candidate, "percent": 100 - baseline_percent, "tag": CANDIDATE_TAG}]

    @staticmethod
    def _normal(traffic: list[dict], service: dict) -> list[tuple]:
        out = []
        for t in traffic:
            revision = t.get("revision") if t.get("type", REVISION) == REVISION else \
                short_name(service.get("latestReadyRevision"))
            out.append((short_name(revision), int(t.get("percent") or 0), t.get("tag") or ""))
        return sorted(out)

    def _set_traffic(self, traffic: list[dict]) -> None:
        service = self._get_service()
        if self._normal(service.get("traffic") or [], service) == self._normal(traffic, service):
            return
        body = {"traffic": traffic}
        if service.get("etag"):
            body["etag"] = service["etag"]
        operation = self._call("PATCH", self.service_path, params={"updateMask": "traffic"}, json=body)
        self._wait(operation)

    def state(self) -> TrafficState:
        service = self._get_service()
        serving = self._serving(service)
        baseline, candidate = self.baseline, self.candidate_revision
        share = float(serving.get(candidate, 0)) if candidate else 0.0
        generation = service.get("generation")
        return TrafficState(self.name, baseline, candidate, share,
                            revision=int(generation) if generation is not None else None)

    def deploy(self) -> TrafficState:
        """The candidate revision beside the baseline, tagged, with no traffic."""
        self._set_traffic(self._traffic(100))
        return self.state()

    def set_weight(self, percent: float) -> TrafficState:
        share = _whole_percent(percent)
        if share == 100:
            return self.promote()
        self._set_traffic(self._traffic(100 - share))
        return self.state()

    def promote(self) -> TrafficState:
        self._set_traffic([{"type": REVISION, "revision": self._require_candidate(), "percent": 100}])
        return self.state()

    def rollback(self) -> TrafficState:
        """All traffic to the baseline, while the service serves only this rollout's revisions."""
        self.left_alone = None
        service = self._get_service()
        serving = set(self._serving(service))
        ours = {self.baseline, self.candidate_revision} - {None}
        if not serving <= ours:
            self.left_alone = (f"{self.service_path} now serves {sorted(serving)}, not this rollout's {sorted(ours)}: a "
                               "later change owns it, so the rollback leaves it as it is")
            log.warning("%s", self.left_alone)
            return self.state()
        self._set_traffic([{"type": REVISION, "revision": self.baseline, "percent": 100}])
        return self.state()
