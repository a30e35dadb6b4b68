"""Fakes of two clouds' documented HTTP APIs on loopback, for the delivery targets' tests.

* `FakeCloudRun`: the Cloud Run Admin API v2 requests a traffic split needs: services.get,
  services.revisions.list (paged), services.patch (`updateMask=traffic`, the service's `etag`
  checked: 409 ABORTED when stale) answered with a long-running operation, operations.get
  (done on the second look).
* `FakeArm`: the Azure Resource Manager Web Apps calls of a slot rollout: get site / slot,
  list and update application settings (of the app or a slot), get and update the site's web
  configuration (ramp-up rules), and slotsswap (202 Accepted with a Location to poll; the
  swap exchanges the slots' non-sticky settings, as App Service does).

Both validate what the real APIs validate for these calls (bearer token, api-version, bodies)
and record every request in `requests` as (method, path, query, body).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from flightdeck.devtools.launch import free_port


class _Fake:
    routes: list[tuple[str, re.Pattern, str]] = []

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict, object]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return self._send(400, {"error": {"code": 400, "message": "body is not JSON"}})
                with fake.lock:
                    fake.requests.append((self.command, parts.path, query, body))
                    scheme, _, token = (self.headers.get("authorization") or "").partition(" ")
                    if scheme != "Bearer" or not token.strip():
                        return self._send(401, {"error": {"code": 401, "message": "no bearer token"}})
                    for method, pattern, name in fake.routes:
                        match = pattern.fullmatch(parts.path)
                        if match and method == self.command:
                            status, answer, *headers = getattr(fake, name)(query, body, **match.groupdict())
                            return self._send(status, answer, headers[0] if headers else {})
                return self._send(404, {"error": {"code": 404, "message": f"no route {self.command} {parts.path}"}})

            def _send(self, status: int, answer: object, headers: dict | None = None) -> None:
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _serve

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def writes(self) -> list[tuple]:
        return [r for r in self.requests if r[0] != "GET" and not r[1].endswith("/appsettings/list")]


def _error(status: int, message: str, code: str) -> tuple[int, dict]:
    return status, {"error": {"code": status, "message": message, "status": code}}


class FakeCloudRun(_Fake):
    """One Cloud Run service (`projects/{p}/locations/{l}/services/{s}`) and its revisions."""

    routes = [
        ("GET", re.compile(r"/v2/(?P<svc>projects/[^/]+/locations/[^/]+/services/[^/]+)"), "get_service"),
        ("PATCH", re.compile(r"/v2/(?P<svc>projects/[^/]+/locations/[^/]+/services/[^/]+)"), "patch_service"),
        ("GET", re.compile(r"/v2/(?P<svc>projects/[^/]+/locations/[^/]+/services/[^/]+)/revisions"), "list_revisions"),
        ("GET", re.compile(r"/v2/(?P<op>projects/[^/]+/locations/[^/]+/operations/[^/]+)"), "get_operation"),
    ]
    PAGE = 2  # small pages, so the client's paging is exercised

    def reset(self, service: str, revisions: list[dict], traffic: list[dict]) -> None:
        with self.lock:
            self.requests.clear()
            self.service_name = service
            self.revisions = [{"name": f"{service}/revisions/{r['name']}", "createTime": f"2026-01-0{i + 1}T00:00:00Z",
                               "conditions": [{"type": "Ready", "state": r.get("ready", "CONDITION_SUCCEEDED")}],
                               "labels": r.get("labels", {})} for i, r in enumerate(revisions)]
            self.service = {"name": service, "generation": "1", "etag": '"e1"', "traffic": traffic,
                            "latestReadyRevision": self.revisions[-1]["name"], "reconciling": False}
            self.operations: dict[str, dict] = {}
            self.fail_next_operation: str | None = None
            self._ids = itertools.count(1)

    def _known(self, svc: str):
        return None if svc == self.service_name else _error(404, f"Resource '{svc}' was not found", "NOT_FOUND")

    def get_service(self, query, body, svc):
        return self._known(svc) or (200, copy.deepcopy(self.service))

    def list_revisions(self, query, body, svc):
        if missing := self._known(svc):
            return missing
        start = int(query.get("pageToken") or 0)
        page = {"revisions": copy.deepcopy(self.revisions[start:start + self.PAGE])}
        if start + self.PAGE < len(self.revisions):
            page["nextPageToken"] = str(start + self.PAGE)
        return 200, page

    def patch_service(self, query, body, svc):
        if missing := self._known(svc):
            return missing
        if query.get("updateMask") != "traffic" or set(body or {}) - {"traffic", "etag"}:
            return _error(400, "this fake takes updateMask=traffic with a body of traffic (and etag)", "INVALID_ARGUMENT")
        if body.get("etag") and body["etag"] != self.service["etag"]:
            return _error(409, "etag mismatch: the service was changed by another request", "ABORTED")
        names = {r["name"].rpartition("/")[2] for r in self.revisions}
        total, tags = 0, []
        for target in body["traffic"]:
            if target.get("type") != "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION" or target.get("revision") not in names:
                return _error(400, f"traffic target {target} names no revision of the service", "INVALID_ARGUMENT")
            percent = target.get("percent", 0)
            if not isinstance(percent, int) or not 0 <= percent <= 100:
                return _error(400, f"percent {percent!r} must be an integer 0-100", "INVALID_ARGUMENT")
            total += percent
            tags += [target["tag"]] if target.get("tag") else []
        if total != 100 or len(tags) != len(set(tags)):
            return _error(400, f"traffic percents sum to {total}, not 100 (or a tag repeats)", "INVALID_ARGUMENT")
        name = f"{svc.rsplit('/services/', 1)[0]}/operations/op-{next(self._ids)}"
        failure = self.fail_next_operation
        self.fail_next_operation = None
        if not failure:
            self.service["traffic"] = copy.deepcopy(body["traffic"])
            generation = int(self.service["generation"]) + 1
            self.service.update(generation=str(generation), etag=f'"e{generation}"')
        self.operations[name] = {"looks": 0, "failure": failure}
        return 200, {"name": name, "done": False, "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Service"}}

    def get_operation(self, query, body, op):
        if op not in self.operations:
            return _error(404, f"operation {op} not found", "NOT_FOUND")
        state = self.operations[op]
        state["looks"] += 1
        answer = {"name": op, "done": state["looks"] >= 2}
        if answer["done"]:
            if state["failure"]:
                answer["error"] = {"code": 9, "message": state["failure"]}
            else:
                answer["response"] = copy.deepcopy(self.service)
        return 200, answer


class FakeArm(_Fake):
    """One function app (`/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Web/sites/{app}`)
    with deployment slots."""

    SITE = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Web/sites/(?P<app>[^/]+)"
    SLOT = SITE + r"(?:/slots/(?P<slot>[^/]+))?"
    routes = [
        ("GET", re.compile(SLOT), "get_site"),
        ("POST", re.compile(SLOT + r"/config/appsettings/list"), "list_settings"),
        ("PUT", re.compile(SLOT + r"/config/appsettings"), "put_settings"),
        ("GET", re.compile(SITE + r"/config/web"), "get_web"),
        ("PATCH", re.compile(SITE + r"/config/web"), "patch_web"),
        ("POST", re.compile(SITE + r"/slots/(?P<slot>[^/]+)/slotsswap"), "swap"),
        ("GET", re.compile(r"/swapoperations/(?P<op>[^/]+)"), "get_swap"),
    ]
    API_VERSION = "2023-12-01"

    def reset(self, subscription: str, group: str, app: str, settings: dict[str, dict[str, str]]) -> None:
        """`settings`: app settings per slot, `production` for the app itself."""
        with self.lock:
            self.requests.clear()
            self.where = (subscription, group, app)
            self.settings = copy.deepcopy(settings)
            self.ramp: list[dict] = []
            self.swaps: dict[str, int] = {}
            self._ids = itertools.count(1)

    def _check(self, query, sub, rg, app, slot=None):
        if query.get("api-version") != self.API_VERSION:
            return _error(400, f"api-version {query.get('api-version')!r} is not supported here", "InvalidApiVersion")
        if (sub, rg, app) != self.where or (slot or "production") not in self.settings:
            return _error(404, f"The Resource 'Microsoft.Web/sites/{app}/slots/{slot}' was not found.", "ResourceNotFound")
        return None

    def _site(self, app: str, slot: str | None) -> dict:
        name = f"{app}/{slot}" if slot else app
        host = f"{app}-{slot}.azurewebsites.net" if slot else f"{app}.azurewebsites.net"
        return {"name": name, "type": "Microsoft.Web/sites/slots" if slot else "Microsoft.Web/sites",
                "properties": {"state": "Running", "defaultHostName": host, "enabled": True}}

    def get_site(self, query, body, sub, rg, app, slot=None):
        return self._check(query, sub, rg, app, slot) or (200, self._site(app, slot))

    def list_settings(self, query, body, sub, rg, app, slot=None):
        return self._check(query, sub, rg, app, slot) or \
            (200, {"name": "appsettings", "properties": dict(self.settings[slot or "production"])})

    def put_settings(self, query, body, sub, rg, app, slot=None):
        if error := self._check(query, sub, rg, app, slot):
            return error
        props = (body or {}).get("properties")
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            return _error(400, "properties must map setting names to strings", "BadRequest")
        self.settings[slot or "production"] = dict(props)
        return 200, {"name": "appsettings", "properties": dict(props)}

    def get_web(self, query, body, sub, rg, app):
        return self._check(query, sub, rg, app) or \
            (200, {"name": "web", "properties": {"experiments": {"rampUpRules": copy.deepcopy(self.ramp)}}})

    def patch_web(self, query, body, sub, rg, app):
        if error := self._check(query, sub, rg, app):
            return error
        rules = (((body or {}).get("properties") or {}).get("experiments") or {}).get("rampUpRules")
        if not isinstance(rules, list):
            return _error(400, "properties.experiments.rampUpRules must be a list", "BadRequest")
        hosts = {f"{app}-{slot}.azurewebsites.net" for slot in self.settings if slot != "production"}
        for rule in rules:
            if rule.get("actionHostName") not in hosts or not 0 <= float(rule.get("reroutePercentage", -1)) <= 100:
                return _error(400, f"ramp-up rule {rule} names no slot host or a bad percentage", "BadRequest")
        self.ramp = copy.deepcopy(rules)
        return 200, {"name": "web", "properties": {"experiments": {"rampUpRules": rules}}}

    def swap(self, query, body, sub, rg, app, slot):
        if error := self._check(query, sub, rg, app, slot):
            return error
        if (body or {}).get("targetSlot") != "production":
            return _error(400, "targetSlot must name the slot to swap with ('production')", "BadRequest")
        op = f"swap-{next(self._ids)}"
        self.swaps[op] = 0
        self.settings["production"], self.settings[slot] = self.settings[slot], self.settings["production"]
        return 202, None, {"Location": f"{self.url}/swapoperations/{op}?api-version={self.API_VERSION}",
                           "Retry-After": "0"}

    def get_swap(self, query, body, op):
        if op not in self.swaps:
            return _error(404, f"operation {op} not found", "NotFound")
        self.swaps[op] += 1
        return (202, None, {"Location": f"{self.url}/swapoperations/{op}?api-version={self.API_VERSION}",
                            "Retry-After": "0"}) if self.swaps[op] < 2 else (200, {"status": "Succeeded"})
