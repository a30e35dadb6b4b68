"""Verify a Lambda package before deploying it: run its handler in a fresh Python process.

The process starts with `-I -S` (no site-packages, no user site, no PYTHON* variables) and
only the unzipped package on `sys.path`, as Lambda's runtime would see it: a module the
package forgot fails here, not in AWS. Inside it the probe times the cold start (import of
the handler + model load + first prediction, the first answer Lambda would bill), answers an
API Gateway HTTP API v2 event and a direct-invoke event, a bad body, then `warm_calls` warm
invocations, and reports its peak RSS.

The scores are compared with the gateway's scoring of the same rows (`ServedModel`: the
gateway's payload parsing, input plan and ONNX Runtime call) on the same model bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

from flightdeck.errors import FlightdeckError
from flightdeck.serverless.package import extract

# The packaged runtime (onnxruntime 1.16 / numpy 1.26) and the gateway's may round the last
# bits differently; anything above this is a different model, not rounding.
SCORE_TOLERANCE = 1e-9

_PROBE = textwrap.dedent('''
    import json, sys, time
    started = time.perf_counter()
    root, events, warm_calls = sys.argv[1], json.load(sys.stdin), int(sys.argv[2])
    sys.path.insert(0, root)
    from flightdeck.serverless import handler as module
    imported = time.perf_counter()
    first = module.handler(events["v2"], None)
    cold = time.perf_counter()
    direct = module.handler(events["direct"], None)
    bad = module.handler(events["bad"], None)
    missing = module.handler(events["missing"], None)
    warm = []
    for _ in range(warm_calls):
        t = time.perf_counter()
        module.handler(events["direct_one"], None)
        warm.append(time.perf_counter() - t)
    # VmHWM, not getrusage: ru_maxrss survives execve, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    heavy = sorted(m for m in ("pandas", "pydantic", "mlflow", "sklearn") if m in sys.modules)
    print(json.dumps({"import_s": imported - started, "cold_start_s": cold - started,
                      "load_s": module.load_model().load_seconds, "warm_s": warm, "first": first,
                      "direct": direct, "bad": bad, "missing": missing, "heavy_modules": heavy,
                      "peak_rss_mb": hwm_kb / 1024}))
''')


class PackageVerificationError(FlightdeckError):
    """The packaged handler failed, answered wrongly, or scored differently from the gateway."""


@dataclass(frozen=True)
class VerifyReport:
    """What the fresh-process probe measured and checked."""

    cold_start_s: float
    import_s: float
    load_s: float
    warm_p50_ms: float
    warm_p99_ms: float
    warm_mean_ms: float
    peak_rss_mb: float
    process_wall_s: float
    rows: int
    max_abs_diff: float
    bad_body_status: int
    missing_field_status: int
    missing_field: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def http_event(body: dict | str, path: str = "/invocations") -> dict:
    """An API Gateway HTTP API (payload format 2.0) event carrying `body`."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {"version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "flightdeck-verify"},
                               "requestId": "verify", "stage": "$default"},
            "body": text, "isBase64Encoded": False}


def split_body(rows: list[dict]) -> dict:
    """An MLflow `dataframe_split` body of JSON-ready records."""
    columns = list(rows[0])
    return {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}}


def gateway_scores(model: bytes, body: dict) -> list[float]:
    """The gateway's scores for an MLflow body: its parsing, input plan and ONNX Runtime call."""
    from flightdeck import runtime
    from flightdeck.serving import payloads
    from flightdeck.serving.models import ServedModel

    served = ServedModel("verify", "0", runtime.load_session(model))
    columns, _ = payloads.columns_from_mlflow(body, max_rows=10**9)
    return served.score(served.feeds(columns)).tolist()


def run_probe(package_dir: str | Path, events: dict, warm_calls: int = 200, timeout: float = 120.0) -> dict:
    """Run the handler of an unzipped package in a fresh interpreter; the probe's measurements."""
    import time

    started = time.perf_counter()
    # The events go through stdin: one command-line argument holds at most 128 KiB on Linux
    # (E2BIG), a couple of hundred rows.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE, str(package_dir), str(warm_calls)],
                            input=json.dumps(events), capture_output=True, text=True, timeout=timeout,
                            check=False, cwd=str(package_dir))
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise PackageVerificationError(
            f"the packaged handler failed in a fresh process: {result.stderr.strip()[-1500:]}. Fix: the package "
            "is missing a module or the model does not load; rebuild it (flightdeck.serverless.package).")
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    probe["process_wall_s"] = wall
    return probe


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def verify_package(zip_path: str | Path, rows: list[dict], warm_calls: int = 200) -> VerifyReport:
    """Unzip the package, probe its handler in a fresh process, compare with the gateway.

    Raises PackageVerificationError naming what went wrong.
    """
    if not rows:
        raise PackageVerificationError("verify_package needs at least one row. Fix: pass sample rows.")
    with tempfile.TemporaryDirectory(prefix="flightdeck-verify-") as tmp:
        root = extract(zip_path, tmp)
        model = (root / "model.onnx").read_bytes()
        body = split_body(rows)
        missing_column = list(rows[0])[0]
        events = {"v2": http_event(body), "direct": {"dataframe_records": rows},
                  "direct_one": {"dataframe_records": rows[:1]}, "bad": http_event("{not json"),
                  "missing": {"dataframe_records": [{k: v for k, v in r.items() if k != missing_column}
                                                    for r in rows[:1]]}}
        probe = run_probe(root, events, warm_calls)
    first, direct = probe["first"], probe["direct"]
    if first.get("statusCode") != 200 or direct.get("statusCode") != 200:
        raise PackageVerificationError(f"the packaged handler refused good rows: v2 answer {first}, direct answer "
                                       f"{direct}. Fix: check the model's inputs against the rows.")
    if probe["heavy_modules"]:
        raise PackageVerificationError(f"the handler imported {probe['heavy_modules']}, which slows its cold start. "
                                       "Fix: keep those imports out of the handler's path.")
    from_v2 = json.loads(first["body"])["predictions"]
    expected = gateway_scores(model, body)
    diff = max(max(abs(a - b) for a, b in zip(from_v2, expected, strict=True)),
               max(abs(a - b) for a, b in zip(direct["predictions"], expected, strict=True)))
    if len(from_v2) != len(expected) or diff > SCORE_TOLERANCE:
        raise PackageVerificationError(
            f"the packaged handler's scores differ from the gateway's by up to {diff:.3g} "
            f"(tolerance {SCORE_TOLERANCE:g}) on {len(rows)} rows. Fix: package the same model version, "
            "and check the runtime pins (flightdeck.serverless.package.LAMBDA_PINS).")
    bad, missing = probe["bad"], probe["missing"]
    if bad.get("statusCode") != 400 or missing.get("statusCode") != 422 or missing.get("field") != missing_column:
        raise PackageVerificationError(f"the handler answered bad input wrongly: bad JSON {bad}, missing column "
                                       f"{missing}. Fix: the handler must answer 4xx naming the field.")
    warm = probe["warm_s"]
    return VerifyReport(
        cold_start_s=round(probe["cold_start_s"], 4), import_s=round(probe["import_s"], 4),
        load_s=round(probe["load_s"], 4), warm_p50_ms=round(1000 * _percentile(warm, 0.5), 4),
        warm_p99_ms=round(1000 * _percentile(warm, 0.99), 4),
        warm_mean_ms=round(1000 * sum(warm) / len(warm), 4) if warm else float("nan"),
        peak_rss_mb=round(probe["peak_rss_mb"], 1), process_wall_s=round(probe["process_wall_s"], 3),
        rows=len(rows), max_abs_diff=diff, bad_body_status=bad["statusCode"],
        missing_field_status=missing["statusCode"], missing_field=missing.get("field"))
