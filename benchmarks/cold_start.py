"""Cold start of the packaged Lambda handler against a pyfunc-based handler, in one run.

    .venv/bin/python benchmarks/cold_start.py [--repeat 7] [--wheel-cache DIR] [--home DIR] [--json [PATH]]

One model, registered in a temporary MLflow store (SQLite + local artifacts) by the
train_register stages themselves (`flightdeck.training.pipeline`, which the DAG's tasks call):
the default logistic regression on generated partitions. Both sides load that very version. Then, alternating, `--repeat` times each (after one untimed run of each, so both
find the files in the page cache):

* the serverless handlers (HANDLERS), each its package unzipped and driven by the shared
  verifier's fresh-process probe (`flightdeck.serverless.verify.run_probe`):
  - lambda: the zip `serverless_package` builds, run by `python -I -S` with only the package
    on `sys.path` (as Lambda's runtime sees /var/task), answering one API Gateway HTTP API v2
    event carrying one row;
  - gcf: the Cloud Functions source package, its `main.py` loaded by the Functions
    Framework's own app (`functions_framework.create_app`) and sent one HTTP request;
  - azure: the Azure Functions package, its `function_app.py` FunctionApp called with one
    `azure.functions.HttpRequest`.
  Each imports its entry point, loads the model on its first request and answers it. The
  import of the platform's own library (the Functions Framework, azure.functions) is timed
  apart (`framework s`) and left out of the handler's cold start, as Lambda's runtime client is;
  the ratio with it is printed too, without a target.
* pyfunc: a fresh `python -I` (site-packages, as a Lambda image built with MLflow would
  have them) that imports MLflow and pandas, calls `mlflow.pyfunc.load_model` on the same
  registered version (its artifacts downloaded beforehand into a local folder, as an image
  would bake them in: the registry download is left out, in pyfunc's favour) and predicts
  the same row, parsed from the same event.

Cold start = from the first line of the process's script to the first prediction (import +
load + predict, wall clock); the interpreter's own start-up is reported separately
(`process` = spawn to exit). Peak memory = the process's VmHWM. Medians over the repeats.

Targets (issues 8 and 20), for each handler: cold start <= 1/10 of pyfunc's; peak <= 128 MB
(Lambda's smallest memory setting; MB there means MiB). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from flightdeck.devtools.results import write_json

MODEL_NAME = "flightdeck-classifier"
HANDLERS = ("lambda", "gcf", "azure")  # the serverless handlers, each against the pyfunc baseline
MAX_RATIO = 0.1          # packaged cold start / pyfunc cold start
MAX_PEAK_MB = 128.0      # Lambda's smallest memory setting
SCORE_TOLERANCE = 1e-6   # both handlers must give the row the same score
TRAIN_DAYS = 20          # the training window's days (2026-01-01 to 2026-01-20)

# A handler a user would write around MLflow: import, load the pyfunc once, parse the event's
# MLflow body into a DataFrame, predict.
_PYFUNC = textwrap.dedent('''
    import json, sys, time
    started = time.perf_counter()
    model_dir, event = sys.argv[1], json.loads(sys.argv[2])
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    imported = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_dir)
    loaded = time.perf_counter()
    split = json.loads(event["body"])["dataframe_split"]
    prediction = model.predict(pd.DataFrame(split["data"], columns=split["columns"]))
    done = time.perf_counter()
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    # The positive-class probability, as flightdeck.runtime.score_feeds takes it.
    if isinstance(prediction, dict):
        probabilities = prediction["probabilities"]
    elif hasattr(prediction, "columns"):
        probabilities = np.stack(prediction["probabilities"].to_numpy())
    else:
        probabilities = prediction
    score = float(np.asarray(probabilities, dtype=np.float64).reshape(1, -1)[0, -1])
    print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                      "cold_start_s": done - started, "score": score, "peak_mb": hwm_kb / 1024}))
''')


# ------------------------------------------------------------------------------ verdicts
def medians(samples: list[dict]) -> dict[str, float]:
    """The median of every numeric field over the repetitions."""
    keys = [k for k in samples[0] if isinstance(samples[0][k], int | float)]
    return {k: statistics.median(s[k] for s in samples) for k in keys}


def evaluate(handlers: dict[str, dict], pyfunc: dict, max_ratio: float = MAX_RATIO,
             max_peak_mb: float = MAX_PEAK_MB) -> list[dict]:
    """The targets of each handler's medians against pyfunc's: [{name, value, target, pass}].
    `handlers` is {name: medians}, or one handler's medians."""
    handlers = _by_name(handlers)
    targets = []
    for name, m in handlers.items():
        ratio = m["cold_start_s"] / pyfunc["cold_start_s"]
        targets += [{"name": f"{name} / pyfunc cold start", "value": ratio, "target": f"<= {max_ratio:g}",
                     "pass": ratio <= max_ratio},
                    {"name": f"{name} peak memory (MB)", "value": m["peak_mb"], "target": f"<= {max_peak_mb:g}",
                     "pass": m["peak_mb"] <= max_peak_mb}]
    return targets


def exit_code(targets: list[dict]) -> int:
    return 0 if all(t["pass"] for t in targets) else 1


def _by_name(handlers: dict) -> dict[str, dict]:
    return {"packaged": handlers} if "cold_start_s" in handlers else handlers


def format_report(handlers: dict[str, dict], pyfunc: dict, targets: list[dict], repeat: int) -> str:
    handlers = _by_name(handlers)
    lines = [f"{'handler':<10} {'cold start s':>12} {'import s':>9} {'framework s':>11} {'process s':>10} "
             f"{'peak MB':>8}   (medians of {repeat})"]
    for name, m in (*handlers.items(), ("pyfunc", pyfunc)):
        lines.append(f"{name:<10} {m['cold_start_s']:>12.3f} {m['import_s']:>9.3f} {m.get('framework_s', 0):>11.3f} "
                     f"{m['process_s']:>10.3f} {m['peak_mb']:>8.1f}")
    for name, m in handlers.items():
        lines.append(f"{name} cold start = 1/{pyfunc['cold_start_s'] / m['cold_start_s']:.1f} of pyfunc's; "
                     f"peak {m['peak_mb'] / pyfunc['peak_mb']:.2f}x pyfunc's")
        if m.get("framework_s", 0) > 0.001:  # Lambda has none to speak of
            lines.append(f"{name} with its platform framework's import: "
                         f"1/{pyfunc['cold_start_s'] / m['with_framework_s']:.1f} of pyfunc's (no target)")
    for t in targets:
        lines.append(f"target {t['name']}: {t['value']:.3f} {t['target']}  {'PASS' if t['pass'] else 'MISS'}")
    return "\n".join(lines)


def _handler_run(platform: str, root: Path, body: str) -> dict:
    """One cold start of a handler's package in a fresh interpreter (the verifier's probe)."""
    from flightdeck.serverless.verify import run_probe

    probe = run_probe(root, [["first", body, "/invocations"], ["direct_one", body, "/invocations"]], warm_calls=0,
                      platform=platform)
    status, answer = probe["answers"]["first"]
    if status != 200:
        raise RuntimeError(f"{platform} handler answered {status}: {answer}")
    # The handler's cold start leaves out the platform's own library (the Functions Framework,
    # azure.functions), as Lambda's leaves out its runtime client: the platform loads it whatever
    # the handler. It is reported beside it, and the total with it.
    framework = probe["framework_s"]
    return {"import_s": probe["import_s"] - framework, "cold_start_s": probe["cold_start_s"] - framework,
            "framework_s": framework, "with_framework_s": probe["cold_start_s"], "score": answer["predictions"][0],
            "peak_mb": probe["peak_rss_mb"], "process_s": probe["process_wall_s"]}


# ------------------------------------------------------------------------------ the run
def _run(args: list[str], env: dict | None = None, timeout: float = 300.0) -> dict:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def _register(home: Path, rows_per_day: int) -> tuple[object, str]:
    """The default model registered as `train_register` registers it: generated partitions, then
    the DAG's stages (train, evaluate, log the run, export with the ONNX parity check, register)."""
    from flightdeck.config import get_settings
    from flightdeck.data.generator import write_partitions
    from flightdeck.registry import Registry
    from flightdeck.training import pipeline
    from flightdeck.training.params import TrainParams

    os.environ["FLIGHTDECK_HOME"] = str(home)  # the stages read the process's settings
    os.environ.setdefault("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
    get_settings.cache_clear()
    settings = get_settings()
    window = {"window_start": "2026-01-01", "window_end": f"2026-01-{TRAIN_DAYS}", "labels_as_of": "2026-03-31"}
    write_partitions(settings.raw_dir, window["window_start"], window["window_end"], rows_per_day=rows_per_day,
                     seed=1)
    params = TrainParams.parse({**window, "model_type": "logistic_regression", "model_name": MODEL_NAME})
    registry = Registry.from_settings(settings)
    validation = pipeline.validate_window(params)
    staging = pipeline.staging_dir("cold-start-benchmark")
    pipeline.train(params, staging)
    evaluation = pipeline.evaluate(params, staging, registry)
    run_id = pipeline.log_run(params, validation, evaluation, registry, airflow_run_id="cold-start-benchmark")
    exported = pipeline.export_onnx(params, staging, registry, run_id)
    registered = pipeline.register(params, registry, run_id, exported["model_uri"], validation["training_key"],
                                   evaluation["decision"]["reason"])
    return registry, registered["version"]


def _one_row_event(model_path: Path) -> dict:
    from flightdeck import runtime
    from flightdeck.data.generator import generate_partition
    from flightdeck.serverless.verify import http_event, split_body

    columns = runtime.input_columns(runtime.load_session(model_path))
    row = generate_partition("2026-03-01", rows=20, seed=5)[columns].dropna().head(1)
    return http_event(split_body(json.loads(row.to_json(orient="records"))))


def _pyfunc_command(model_dir: str, event: str) -> list[str]:
    return [sys.executable, "-I", "-c", _PYFUNC, model_dir, event]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each handler")
    parser.add_argument("--train-rows", type=int, default=2000,
                        help="generated rows over the 20-day training window (before the holdout split)")
    parser.add_argument("--wheel-cache", help="Lambda platform wheels (default FLIGHTDECK_HOME/cache/lambda-wheels)")
    parser.add_argument("--home", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also print the figures as JSON; with PATH, write them there with the command and the date")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    import logging

    from flightdeck.serverless.package import (
        build_source_package,
        default_wheel_cache,
        extract,
        package_registered_model,
    )

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its input-example warnings are expected here

    wheel_cache = Path(args.wheel_cache) if args.wheel_cache else default_wheel_cache()
    with tempfile.TemporaryDirectory(prefix="flightdeck-cold-start-") as tmp:
        home = Path(args.home) if args.home else Path(tmp)
        print(f"load average {os.getloadavg()[0]:.2f}; registering the model in a temporary MLflow store", flush=True)
        registry, version = _register(home / "flightdeck", max(1, args.train_rows // TRAIN_DAYS))
        built = package_registered_model(registry, MODEL_NAME, version, home / "package", wheel_cache=wheel_cache)
        root = extract(built.zip_path, home / "unzipped")
        print(f"package {Path(built.zip_path).name}: {built.zipped_bytes / 2**20:.1f} MB zipped, "
              f"{built.unzipped_bytes / 2**20:.1f} MB unzipped", flush=True)
        roots = {"lambda": root}
        for platform in HANDLERS[1:]:
            source = build_source_package((root / "model.onnx").read_bytes(), MODEL_NAME, version,
                                          home / "package", platform)
            roots[platform] = extract(source.zip_path, home / f"unzipped-{platform}")

        import mlflow.artifacts

        model_dir = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/{version}",
                                                        dst_path=str(home / "pyfunc-model"),
                                                        tracking_uri=registry.tracking_uri)
        event = json.dumps(_one_row_event(root / "model.onnx"))
        body = json.loads(event)["body"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FLIGHTDECK_"))}

        # Untimed runs: fill the page cache for all. pyfunc scores the registered version as
        # logged, from a DataFrame; if it cannot, the run fails here with MLflow's error.
        for platform in HANDLERS:
            _handler_run(platform, roots[platform], body)
        _run(_pyfunc_command(model_dir, event), env)

        samples: dict[str, list[dict]] = {name: [] for name in (*HANDLERS, "pyfunc")}
        for i in range(args.repeat):
            # Rotate the order so slow moments of the machine fall on all of them.
            runs = [*((name, lambda name=name: _handler_run(name, roots[name], body)) for name in HANDLERS),
                    ("pyfunc", lambda: _run(_pyfunc_command(model_dir, event), env))]
            shift = i % len(runs)
            for name, run in runs[shift:] + runs[:shift]:
                samples[name].append(run())
        handlers = {name: medians(samples[name]) for name in HANDLERS}
        pyfunc = medians(samples["pyfunc"])
        diff = max(abs(p["score"] - q["score"]) for name in HANDLERS
                   for p, q in zip(samples[name], samples["pyfunc"], strict=True))
        if diff > SCORE_TOLERANCE:
            print(f"the handlers score the row differently (|diff| {diff:.3g}): not the same model", flush=True)
            return 2
        targets = evaluate(handlers, pyfunc)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; pyfunc input: a DataFrame; "
              f"|score diff| {diff:.2g}", flush=True)
        print(format_report(handlers, pyfunc, targets, args.repeat))
        print(f"load average {os.getloadavg()[0]:.2f}")
        figures = {"packaged": handlers["lambda"], "handlers": handlers, "pyfunc": pyfunc, "targets": targets,
                   "pyfunc_input": "dataframe", "samples": samples, "package_mb": {"zipped": built.zipped_bytes / 2**20,
                                                                    "unzipped": built.unzipped_bytes / 2**20}}
        if args.json == "-":
            print(json.dumps(figures, indent=2))
        elif args.json:
            write_json(args.json, "cold_start", argv, figures)
    return exit_code(targets)


if __name__ == "__main__":
    sys.exit(main())
