"""Blue-green for an Azure function app through deployment slots, with the ARM REST API.

Production serves the baseline; the `staging` slot (any slot name) gets the candidate. Which
model version a slot runs is its app setting `FLIGHTDECK_MODEL_VERSION` (a slot setting that
is *not* sticky, so it swaps with the code). `deploy()` checks the slot holds the candidate
(and, given `package_url`, first points the slot at that package: WEBSITE_RUN_FROM_PACKAGE
and the model's settings, through "Update Application Settings Slot"); `set_weight(p)` sends
p % of production's requests to the slot with a ramp-up rule ("testing in production",
`siteConfig.experiments.rampUpRules`); `promote()` swaps the slot into production
(`slotsswap`, a long-running operation polled through its Location header) and clears the
rule; `rollback()` clears the rule and, if the candidate already went live, swaps back.

Every method reads first and writes only what differs. Only `requests` (no Airflow, no Azure
SDK): the caller hands in a bearer token for https://management.azure.com/ (a string or a
callable, e.g. `azure.identity`'s `get_token(...).token`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.delivery.targets.rest import ApiError, BearerRest
from flightdeck.errors import ConfigError, FlightdeckError

API_BASE = "https://management.azure.com"
API_VERSION = "2023-12-01"
MODEL_SETTING, VERSION_SETTING = "FLIGHTDECK_MODEL_NAME", "FLIGHTDECK_MODEL_VERSION"
PACKAGE_SETTING = "WEBSITE_RUN_FROM_PACKAGE"

log = logging.getLogger(__name__)


class AzureSlotsError(FlightdeckError):
    """A slot rollout cannot proceed; the message names the app or slot and the fix."""


class AzureNotFoundError(AzureSlotsError):
    pass


class AzureSlotsTarget(BearerRest):
    """Production and one deployment slot of a function app as a `DeliveryTarget`.

    Args:
        subscription_id, resource_group, app: the function app.
        slot: the slot the candidate goes to (default `staging`).
        model_name, model_version: the candidate.
        baseline_version: the version production serves before the rollout; None reads it on
            first use (`to_dict()` records it).
        package_url: the candidate's package (a URL the app can read); None when the package
            was deployed to the slot already.
        token: a bearer token for ARM, or a callable returning one.
        api_base: ARM's root (another cloud's, or a fake in tests).
    """

    def __init__(self, *, subscription_id: str, resource_group: str, app: str, model_name: str,
                 model_version: str | int, slot: str = "staging", baseline_version: str | int | None = None,
                 package_url: str | None = None, token: str | Callable[[], str] | None = None,
                 api_base: str = API_BASE, api_version: str = API_VERSION, session: Any = None,
                 name: str | None = None, poll_seconds: float = 2.0, swap_timeout: float = 900.0) -> None:
        for field, value in (("subscription_id", subscription_id), ("resource_group", resource_group),
                             ("app", app), ("slot", slot)):
            if not value or "/" in str(value):
                raise ConfigError(field, f"{value!r} is not an Azure {field}", f"pass the function app's {field}")
        if slot == "production":
            raise ConfigError("slot", "'production' is the live app, not a deployment slot",
                              "name the slot the candidate is deployed to, e.g. 'staging'")
        self.subscription_id, self.resource_group, self.app, self.slot = subscription_id, resource_group, app, slot
        self.model_name, self.model_version = str(model_name), str(model_version)
        self._baseline = None if baseline_version is None else str(baseline_version)
        self.package_url = package_url
        self.token = token
        self.api_base, self.api_version = api_base.rstrip("/"), api_version
        self.name = name or f"azure_slots:{app}/{slot}"
        self.poll_seconds, self.swap_timeout = poll_seconds, swap_timeout
        self.left_alone: str | None = None
        self._session = session

    def to_dict(self) -> dict:
        return {"kind": "azure_slots", "subscription_id": self.subscription_id, "resource_group": self.resource_group,
                "app": self.app, "slot": self.slot, "model_name": self.model_name, "model_version": self.model_version,
                "baseline_version": self.baseline, "package_url": self.package_url, "api_base": self.api_base,
                "api_version": self.api_version, "name": self.name, "swap_timeout": self.swap_timeout}

    @classmethod
    def from_dict(cls, data: dict, token: str | Callable[[], str] | None = None, session: Any = None) -> AzureSlotsTarget:
        fields = dict(data)
        kind = fields.pop("kind", "azure_slots")
        if kind != "azure_slots":
            raise ConfigError("kind", f"{kind!r} is not an azure_slots target", "pass AzureSlotsTarget.to_dict()")
        return cls(**fields, token=token, session=session)

    # -- HTTP ------------------------------------------------------------------------------

    def default_token(self) -> str:
        raise ConfigError("token", "no ARM token given", "pass a bearer token for https://management.azure.com/ "
                          "(e.g. from azure.identity's DefaultAzureCredential) or a callable returning one")

    @property
    def site_path(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.Web/sites/{self.app}")

    def _slot_path(self, slot: str | None) -> str:
        return self.site_path if slot is None else f"{self.site_path}/slots/{slot}"

    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        url = path_or_url if path_or_url.startswith("http") else f"{self.api_base}{path_or_url}"
        params = kwargs.pop("params", None) or ({} if "api-version=" in url else {"api-version": self.api_version})
        return self.send(method, url, lambda e: self._error(method, path_or_url, e), params=params, **kwargs)

    def _error(self, method: str, path_or_url: str, error: ApiError) -> AzureSlotsError:
        if error.status == 404:
            return AzureNotFoundError(f"{path_or_url} does not exist ({error.code}: {error.message}). Fix: create the "
                                      f"function app and its {self.slot!r} slot first (terraform module "
                                      "azure_function) or correct the subscription, resource group, app and slot names.")
        if error.status in (401, 403):
            return AzureSlotsError(f"ARM refused {method} {path_or_url} ({error.status} {error.code}: {error.message}). "
                                   "Fix: give the caller the Website Contributor role on the function app.")
        return AzureSlotsError(f"ARM answered {error.status} to {method} {path_or_url}: {error.code}: {error.message}")

    def _settings(self, slot: str | None) -> dict[str, str]:
        return self._request("POST", f"{self._slot_path(slot)}/config/appsettings/list").json().get("properties") or {}

    def _version(self, slot: str | None) -> str | None:
        return self._settings(slot).get(VERSION_SETTING)

    def _ramp(self) -> list[dict]:
        config = self._request("GET", f"{self.site_path}/config/web").json()
        return ((config.get("properties") or {}).get("experiments") or {}).get("rampUpRules") or []

    def _set_ramp(self, percent: float) -> None:
        rules = []
        if percent:
            host = (self._request("GET", self._slot_path(self.slot)).json().get("properties") or {}).get("defaultHostName")
            rules = [{"actionHostName": host, "reroutePercentage": float(percent), "name": self.slot}]
        current = [(r.get("actionHostName"), float(r.get("reroutePercentage") or 0)) for r in self._ramp()]
        if current == [(r["actionHostName"], r["reroutePercentage"]) for r in rules]:
            return
        self._request("PATCH", f"{self.site_path}/config/web",
                      json={"properties": {"experiments": {"rampUpRules": rules}}})

    def _swap(self) -> None:
        """Swap the slot with production and wait for ARM's long-running operation."""
        response = self._request("POST", f"{self._slot_path(self.slot)}/slotsswap",
                                 json={"targetSlot": "production", "preserveVnet": True})
        deadline = time.monotonic() + self.swap_timeout
        location = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
        while response.status_code == 202 and location:
            if time.monotonic() > deadline:
                raise AzureSlotsError(f"the swap of {self.app}/{self.slot} is not done after {self.swap_timeout:.0f} s. "
                                      "Fix: check the app's activity log, then retry the task.")
            time.sleep(float(response.headers.get("Retry-After") or self.poll_seconds))
            response = self._request("GET", location)
            status = (response.json() if response.content else {}).get("status", "")
            if status in ("Failed", "Canceled"):
                raise AzureSlotsError(f"the swap of {self.app}/{self.slot} into production {status.lower()}: "
                                      f"{response.json().get('error')}. Fix: read the activity log of the app, then "
                                      "retry the task.")
            if status == "Succeeded":
                break

    # -- the DeliveryTarget protocol -----------------------------------------------------

    @property
    def baseline(self) -> str:
        if self._baseline is None:
            version = self._version(None)
            if not version:
                raise AzureSlotsError(f"{self.app} (production) has no {VERSION_SETTING} app setting, so the version "
                                      "it serves is unknown. Fix: set it where the package is deployed, or pass "
                                      "baseline_version.")
            self._baseline = version
        return self._baseline

    def variant_names(self) -> tuple[str, str]:
        return self.baseline, self.model_version

    def state(self) -> TrafficState:
        live, staged = self._version(None), self._version(self.slot)
        ramp = sum(float(r.get("reroutePercentage") or 0) for r in self._ramp())
        if live == self.model_version:
            share = 100.0 - (ramp if staged == self.baseline else 0.0)
        else:
            share = ramp if staged == self.model_version else 0.0
        return TrafficState(self.name, self.baseline, self.model_version, share)

    def deploy(self) -> TrafficState:
        """The candidate in the slot, taking no traffic."""
        baseline = self.baseline
        if self.model_version == baseline:
            raise AzureSlotsError(f"{self.app} serves version {baseline} already: nothing to roll out. Fix: package "
                                  "a different model version.")
        settings = self._settings(self.slot)
        if settings.get(VERSION_SETTING) != self.model_version:
            if not self.package_url:
                raise AzureSlotsError(
                    f"slot {self.app}/{self.slot} runs version {settings.get(VERSION_SETTING)!r}, not the candidate "
                    f"{self.model_version}. Fix: deploy the candidate's package to the slot (zip deploy with "
                    f"--slot {self.slot}, setting {VERSION_SETTING}), or pass package_url.")
            wanted = {**settings, PACKAGE_SETTING: self.package_url, MODEL_SETTING: self.model_name,
                      VERSION_SETTING: self.model_version}
            self._request("PUT", f"{self._slot_path(self.slot)}/config/appsettings", json={"properties": wanted})
        self._set_ramp(0)
        return self.state()

    def set_weight(self, percent: float) -> TrafficState:
        if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
            raise ConfigError("percent", f"{percent!r} is not a share between 0 and 100",
                              "pass the candidate's share of traffic in percent, e.g. 10")
        if percent >= 100:
            return self.promote()
        if self._version(self.slot) != self.model_version:
            raise AzureSlotsError(f"slot {self.app}/{self.slot} does not hold the candidate {self.model_version}. "
                                  "Fix: run deploy() (the promotion DAG's deploy task) first.")
        self._set_ramp(percent)
        return self.state()

    def promote(self) -> TrafficState:
        """The slot swapped into production (once), the ramp-up rule cleared."""
        if self._version(None) != self.model_version:
            if self._version(self.slot) != self.model_version:
                raise AzureSlotsError(f"neither {self.app} nor its slot {self.slot} holds the candidate "
                                      f"{self.model_version}. Fix: run deploy() first.")
            self._set_ramp(0)
            self._swap()
        self._set_ramp(0)
        return self.state()

    def rollback(self) -> TrafficState:
        """Production back to the baseline, while production and the slot hold only this rollout's
        versions; otherwise leave them and say why in `left_alone`."""
        self.left_alone = None
        live, staged = self._version(None), self._version(self.slot)
        ours = {self.baseline, self.model_version}
        if live not in ours or (live == self.model_version and staged != self.baseline):
            self.left_alone = (f"{self.app} serves {live!r} (slot {self.slot}: {staged!r}), not this rollout's "
                               f"{sorted(ours)}: a later change owns it, so the rollback leaves it as it is")
            log.warning("%s", self.left_alone)
            return self.state()
        self._set_ramp(0)
        if live == self.model_version:
            self._swap()
        return self.state()
