"""One look of a metric gate (`look_once`, what the Airflow trigger calls) against a loopback
HTTP server answering the gateway's GET /stats: the error-increase test applies to a canary
step's split traffic and not against a recorded baseline or to a shadow candidate."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flightdeck.delivery.gating import look_once
from flightdeck.delivery.plan import GateSettings
from flightdeck.delivery.window import VariantWindow

GATES = GateSettings().model_dump(mode="json")
ALPHA = GateSettings().alpha_per_window(4)
SELECTOR = {"baseline_variant": "stable", "baseline_version": "1", "candidate_variant": "canary",
            "candidate_version": "2"}
SINCE = {"route_version": 3, "epoch": 1_800_000_000.0}


def _item(role: str, variant: str, version: str, requests: int, errors: int) -> dict:
    rows = requests - errors
    return {"endpoint": "credit", "role": role, "variant": variant, "model_version": version,
            "requests": requests, "errors": errors, "rows": rows, "latency_sum": 0.02 * requests,
            "latency_sumsq": 0.0005 * requests, "score_bins": [rows // 10] * 9 + [rows - 9 * (rows // 10)],
            "disagreements": 0}


@pytest.fixture(scope="module")
def gateway_stats():
    """Live traffic 95/5, the canary at twice the baseline's error rate (1 % → 2 %)."""
    answers = {
        "live": {"variants": [_item("live", "stable", "1", 57_000, 570), _item("live", "canary", "2", 3_000, 60)]},
        "shadow": {"variants": [_item("shadow", "canary", "2", 57_000, 1_140)]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            role = "shadow" if "role=shadow" in self.path else "live"
            body = json.dumps(answers[role]).encode()
            self.send_response(200 if self.path.startswith("/stats/credit?") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield {"kind": "gateway", "url": f"http://127.0.0.1:{server.server_address[1]}", "endpoint": "credit"}
    server.shutdown()
    server.server_close()


def _look(source: dict, **kwargs) -> dict:
    return look_once(source, {**SELECTOR, **kwargs.pop("selector", {})}, SINCE, GATES, ALPHA, elapsed_s=120.0,
                     bake_s=300.0, max_s=900.0, final=False, **kwargs)


def test_a_canary_step_fails_on_the_error_increase_before_the_bake_is_over(gateway_stats):
    outcome = _look(gateway_stats)
    checks = {c["name"]: c for c in outcome["report"]["checks"]}
    assert outcome["decision"] == "fail" and "error_increase failed" in outcome["reason"]
    assert checks["error_increase"]["status"] == "fail"
    assert checks["error_rate"]["status"] == "undecided"  # the margin alone cannot tell yet
    assert checks["error_increase"]["threshold"] == pytest.approx(0.05)


def test_against_a_recorded_baseline_or_a_shadow_candidate_the_test_does_not_apply(gateway_stats):
    recorded = VariantWindow(requests=57_000, errors=570, latency_sum=0.02 * 57_000,
                             latency_sumsq=0.0005 * 57_000).to_dict()
    bake = _look(gateway_stats, fixed_baseline=recorded)
    assert "error_increase" not in {c["name"] for c in bake["report"]["checks"]}
    assert bake["decision"] == "wait"
    shadow = _look(gateway_stats, selector={"candidate_role": "shadow"})
    assert "error_increase" not in {c["name"] for c in shadow["report"]["checks"]}
