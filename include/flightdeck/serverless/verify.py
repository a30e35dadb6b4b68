"""Verify a serverless package before deploying it: run its handler in a fresh Python process.

One path for the three platforms. The package is unzipped and its handler driven, in a fresh
interpreter, through the platform's own calling convention:

* Lambda: `python -I -S` (no site-packages, no user site, no PYTHON* variables) with only the
  package on `sys.path`, as Lambda's runtime sees /var/task: a module the package forgot
  fails here, not in AWS. Events: an API Gateway HTTP API v2 event and direct invocations.
* Cloud Functions: `python -I` with the package first on `sys.path` (its requirements come
  from site-packages, as the platform's build installs them); the Functions Framework's own
  WSGI app (`functions_framework.create_app`) is built on `main.py` and sent HTTP requests.
* Azure Functions: the same, with `function_app.py`'s `FunctionApp` and the library's
  `HttpRequest` objects.

Inside it the probe times the cold start (import of the entry point + model load + first
prediction, the first answer the platform would bill; `framework_s` of it is the import of the
platform's own library, the Functions Framework or `azure.functions`, which the platform loads
whatever the handler), answers a good body, a records body,
a bad body and a row missing a column, then `warm_calls` warm requests, checks the code it
ran is the package's, and reports its peak RSS. The scores are compared with the gateway's
scoring of the same rows (`ServedModel`: the gateway's payload parsing, input plan and ONNX
Runtime call) on the same model bytes.
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
from flightdeck.serverless.package import extract, platform_of

# The packaged runtime (onnxruntime 1.16 / numpy 1.26 on Lambda) and the gateway's may round
# the last bits differently; anything above this is a different model, not rounding.
SCORE_TOLERANCE = 1e-9

# How each platform's entry point is loaded and called: `call(name, body_text, path)` returns
# (status, answer dict). Lambda's "direct" requests are direct invocations (the body is the event).
_ENTRY = {
    "lambda": textwrap.dedent('''
        framework = time.perf_counter()  # Lambda's runtime client is not part of the package
        from flightdeck.serverless import handler as module
        def call(name, body, path):
            if name.startswith("direct") or name == "missing":
                answer = module.handler(json.loads(body), None)
                return answer.pop("statusCode"), answer
            event = {"version": "2.0", "routeKey": "POST " + path, "rawPath": path, "rawQueryString": "",
                     "headers": {"content-type": "application/json"}, "body": body, "isBase64Encoded": False,
                     "requestContext": {"http": {"method": "POST", "path": path}, "requestId": "verify"}}
            answer = module.handler(event, None)
            return answer["statusCode"], json.loads(answer["body"])
    '''),
    "gcf": textwrap.dedent('''
        import functions_framework
        framework = time.perf_counter()
        client = functions_framework.create_app("score", root + "/main.py").test_client()
        def call(name, body, path):
            answer = client.post(path, data=body, content_type="application/json")
            return answer.status_code, answer.get_json()
    '''),
    "azure": textwrap.dedent('''
        import azure.functions as func
        framework = time.perf_counter()
        import function_app
        functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
        def call(name, body, path):
            route = path.rstrip("/").rpartition("/")[2]
            request = func.HttpRequest("POST", "http://localhost" + path, body=body.encode(),
                                       headers={"content-type": "application/json"})
            answer = functions["score_" + route](request)
            return answer.status_code, json.loads(answer.get_body())
    '''),
}

_PROBE = textwrap.dedent('''
    import json, sys, time
    started = time.perf_counter()
    root, warm_calls, requests = sys.argv[1], int(sys.argv[2]), json.load(sys.stdin)
    sys.path.insert(0, root)
    {entry}
    imported = time.perf_counter()
    answers = {{}}
    for name, body, path in requests:
        answers[name] = call(name, body, path)
        if len(answers) == 1:
            cold = time.perf_counter()
    warm = []
    name, body, path = next(r for r in requests if r[0] == "direct_one")
    for _ in range(warm_calls):
        t = time.perf_counter()
        call(name, body, path)
        warm.append(time.perf_counter() - t)
    # VmHWM, not getrusage: ru_maxrss survives execve, so it would report the parent's peak.
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    heavy = sorted(m for m in ("pandas", "pydantic", "mlflow", "sklearn") if m in sys.modules)
    from flightdeck.serverless import core
    print(json.dumps({{"import_s": imported - started, "cold_start_s": cold - started,
                      "framework_s": framework - started,
                      "load_s": core.load_model().load_seconds, "warm_s": warm, "answers": answers,
                      "core_file": core.__file__, "heavy_modules": heavy, "peak_rss_mb": hwm_kb / 1024}}))
''')


# Lambda events given as they are (`run_probe` with a dict of events): each handler answer is
# returned unchanged under its event's name, the first one ("v2") as `first`.
_LAMBDA_EVENTS = textwrap.dedent('''
    framework = time.perf_counter()
    from flightdeck.serverless import handler as module
    events = requests
    requests = [["first" if name == "v2" else name, name, ""] for name in events]
    def call(name, event_name, path):
        return module.handler(events[event_name], None)
''')


def probe_script(platform: str) -> str:
    """The fresh-process probe for `platform` (lambda, gcf, azure)."""
    return _PROBE.format(entry=(_LAMBDA_EVENTS if platform == "lambda-events" else _ENTRY[platform]).strip())


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
    platform: str = "lambda"

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


def run_probe(package_dir: str | Path, requests: list[list[str]] | dict, warm_calls: int = 200,
              timeout: float = 120.0, platform: str | None = None) -> dict:
    """Run the handler of an unzipped package in a fresh interpreter on `requests` ([name, body
    text, path]; one named `direct_one` is repeated warm); the probe's measurements, with each
    answer as (status, answer) under `answers`.

    A Lambda package also takes a dict of raw events ({name: event}, one of them `v2`, one
    `direct_one`): each handler answer is then returned unchanged, under its name (`v2`'s as
    `first`)."""
    import time

    platform = platform or platform_of(package_dir)
    raw_events = isinstance(requests, dict)
    if raw_events:
        platform = "lambda-events"
    # Lambda's runtime has nothing but the package (-S: no site-packages); the others install
    # their requirements.txt, which site-packages stands in for.
    flags = ["-I", "-S"] if platform.startswith("lambda") else ["-I"]
    started = time.perf_counter()
    # The requests go through stdin: one command-line argument holds at most 128 KiB on Linux
    # (E2BIG), a couple of hundred rows.
    result = subprocess.run([sys.executable, *flags, "-c", probe_script(platform), str(package_dir), str(warm_calls)],
                            input=json.dumps(requests), capture_output=True, text=True, timeout=timeout,
                            check=False, cwd=str(package_dir))
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise PackageVerificationError(
            f"the packaged {platform} handler failed in a fresh process: {result.stderr.strip()[-1500:]}. Fix: the "
            "package is missing a module or the model does not load; rebuild it (flightdeck.serverless.package).")
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    probe["process_wall_s"] = wall
    probe["platform"] = platform.removesuffix("-events")
    if raw_events:
        probe.update(probe["answers"])
    return probe


def probe_requests(rows: list[dict]) -> tuple[list[list[str]], str]:
    """The requests every platform's probe sends, and the column left out of the `missing` one."""
    missing_column = list(rows[0])[0]
    requests = [["first", json.dumps(split_body(rows)), "/invocations"],
                ["direct", json.dumps({"dataframe_records": rows}), "/invocations"],
                ["bad", "{not json", "/invocations"],
                ["missing", json.dumps({"dataframe_records": [{k: v for k, v in r.items() if k != missing_column}
                                                              for r in rows[:1]]}), "/invocations"],
                ["direct_one", json.dumps({"dataframe_records": rows[:1]}), "/invocations"]]
    return requests, missing_column


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def verify_package(zip_path: str | Path, rows: list[dict], warm_calls: int = 200) -> VerifyReport:
    """Unzip the package (Lambda, Cloud Functions or Azure: told by its entry files), probe its
    handler in a fresh process, compare with the gateway.

    Raises PackageVerificationError naming what went wrong.
    """
    if not rows:
        raise PackageVerificationError("verify_package needs at least one row. Fix: pass sample rows.")
    requests, missing_column = probe_requests(rows)
    with tempfile.TemporaryDirectory(prefix="flightdeck-verify-") as tmp:
        root = extract(zip_path, tmp)
        model = (root / "model.onnx").read_bytes()
        probe = run_probe(root, requests, warm_calls)
        ran_packaged = Path(probe["core_file"]).resolve().is_relative_to(root.resolve())
    answers = probe["answers"]
    (first_status, first), (direct_status, direct) = answers["first"], answers["direct"]
    if first_status != 200 or direct_status != 200:
        raise PackageVerificationError(f"the packaged handler refused good rows: split body {first_status} {first}, "
                                       f"records body {direct_status} {direct}. Fix: check the model's inputs "
                                       "against the rows.")
    if not ran_packaged:
        raise PackageVerificationError(f"the probe ran {probe['core_file']}, not the package's code. Fix: the "
                                       "package's folder must come first on sys.path.")
    if probe["heavy_modules"]:
        raise PackageVerificationError(f"the handler imported {probe['heavy_modules']}, which slows its cold start. "
                                       "Fix: keep those imports out of the handler's path.")
    expected = gateway_scores(model, split_body(rows))
    got = [first["predictions"], direct["predictions"]]
    if any(len(g) != len(expected) for g in got):
        raise PackageVerificationError(f"the packaged handler returned {[len(g) for g in got]} scores for "
                                       f"{len(expected)} rows. Fix: rebuild the package from this version.")
    diff = max(abs(a - b) for g in got for a, b in zip(g, expected, strict=True))
    if diff > SCORE_TOLERANCE:
        raise PackageVerificationError(
            f"the packaged handler's scores differ from the gateway's by up to {diff:.3g} "
            f"(tolerance {SCORE_TOLERANCE:g}) on {len(rows)} rows. Fix: package the same model version, "
            "and check the runtime pins (flightdeck.serverless.package.LAMBDA_PINS).")
    (bad_status, bad), (missing_status, missing) = answers["bad"], answers["missing"]
    if bad_status != 400 or missing_status != 422 or missing.get("field") != missing_column:
        raise PackageVerificationError(f"the handler answered bad input wrongly: bad JSON {bad_status} {bad}, "
                                       f"missing column {missing_status} {missing}. Fix: the handler must answer "
                                       "4xx naming the field.")
    warm = probe["warm_s"]
    return VerifyReport(
        cold_start_s=round(probe["cold_start_s"], 4), import_s=round(probe["import_s"], 4),
        load_s=round(probe["load_s"], 4), warm_p50_ms=round(1000 * _percentile(warm, 0.5), 4),
        warm_p99_ms=round(1000 * _percentile(warm, 0.99), 4),
        warm_mean_ms=round(1000 * sum(warm) / len(warm), 4) if warm else float("nan"),
        peak_rss_mb=round(probe["peak_rss_mb"], 1), process_wall_s=round(probe["process_wall_s"], 3),
        rows=len(rows), max_abs_diff=diff, bad_body_status=bad_status,
        missing_field_status=missing_status, missing_field=missing.get("field"), platform=probe["platform"])
