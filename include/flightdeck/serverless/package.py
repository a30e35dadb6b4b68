"""Build the Lambda deployment package: handler + the flightdeck modules it needs + ONNX
Runtime and numpy for Lambda's platform + the model.

The zip is laid out for the `python3.11` runtime (handler `flightdeck.serverless.handler.handler`):

    flightdeck/{__init__,errors,runtime}.py, flightdeck/serving/{errors,payloads}.py,
    flightdeck/serverless/handler.py   the code (with unchecked-hash .pyc, see below)
    numpy/ onnxruntime/ orjson/        wheels for manylinux2014_x86_64 / CPython 3.11
    model.onnx model.json              the artifact and its registry coordinates

Why these pins and not requirements.txt's: Lambda's python3.11 runtime runs on Amazon Linux 2
(glibc 2.26). onnxruntime publishes manylinux2014 (glibc 2.17) wheels for CPython 3.11 up to
1.16.3 only; 1.17 and later (requirements.txt pins 1.32) ship manylinux_2_27/2_28 wheels that
do not load there, and 1.16 is built against numpy 1.x. `verify.py` proves the packaged
runtime scores every row like the gateway does.

The zip is deterministic (sorted entries, fixed timestamps and modes, bytecode naming its
sources under /var/task): the same model gives the same CodeSha256, so deploying it twice
publishes no second version.
"""

from __future__ import annotations

import base64
import compileall
import hashlib
import json
import logging
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flightdeck.delivery.targets.aws_lambda import (
    MAX_DIRECT_UPLOAD_BYTES,
    MAX_UNZIPPED_BYTES,
    LambdaPackageError,
)

log = logging.getLogger(__name__)

HANDLER = "flightdeck.serverless.handler.handler"
LAMBDA_RUNTIME = "python3.11"
LAMBDA_TASK_ROOT = "/var/task"
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
# See the module docstring: the newest versions with manylinux2014 wheels for CPython 3.11.
LAMBDA_PINS = {"onnxruntime": "1.16.3", "numpy": "1.26.4", "orjson": "3.13.0"}  # orjson as in requirements.txt
# The flightdeck modules every handler imports (nothing that pulls pandas, pydantic or MLflow):
# the shared core and the gateway's parsing and scoring; each platform adds its adapter.
CORE_SOURCES = ("__init__.py", "errors.py", "runtime.py", "serving/__init__.py", "serving/errors.py",
                "serving/payloads.py", "serverless/__init__.py", "serverless/core.py")
SOURCES = (*CORE_SOURCES, "serverless/handler.py")
# Parts of the wheels the handler never imports: tests, training/quantization tooling, headers.
TRIM = ("numpy/*/tests", "numpy/tests", "numpy/_core/include", "numpy/core/include", "numpy/f2py",
        "numpy/distutils", "numpy/testing", "numpy/typing", "numpy/doc", "onnxruntime/tools",
        "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/datasets",
        "onnxruntime/backend", "bin")
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
_ZIP_LEVEL = 6  # zlib's default: level 9 took 3x as long for a 0.7 % smaller zip
_COMPLETE = ".flightdeck-complete"  # marks a fully built cached platform tree


class PackageIntegrityError(LambdaPackageError):
    """The zip about to be deployed is not the one that was packaged and verified."""


class PackageTooLargeError(LambdaPackageError):
    """The package is over Lambda's zip limits; the message carries the measured sizes."""


@dataclass(frozen=True)
class PackageResult:
    """A built package: where it is, how big, and what it holds."""

    zip_path: str
    zipped_bytes: int
    unzipped_bytes: int
    code_sha256: str  # as Lambda reports it (base64 of SHA-256)
    model_name: str
    model_version: str
    pins: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def default_wheel_cache() -> Path:
    """Where downloaded Lambda wheels are kept between builds: FLIGHTDECK_HOME/cache/lambda-wheels."""
    from flightdeck.config import get_settings

    return get_settings().home / "cache" / "lambda-wheels"


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise LambdaPackageError(
            f"pip {args[0]} for the Lambda platform failed: {result.stderr.strip()[-800:]}. Fix: check the "
            f"network / package index, or pre-fill the wheel cache with {PLATFORM} cp311 wheels of "
            f"{', '.join(f'{n}=={v}' for n, v in LAMBDA_PINS.items())}.")


def fetch_wheels(cache: Path, pins: dict[str, str] | None = None) -> list[Path]:
    """The platform wheels of `pins`, downloaded into `cache` unless already there."""
    pins = pins or LAMBDA_PINS
    cache.mkdir(parents=True, exist_ok=True)

    def cached(name: str, version: str) -> list[Path]:
        return sorted(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl"))

    missing = [f"{n}=={v}" for n, v in pins.items() if not cached(n, v)]
    if missing:
        log.info("downloading %s for %s", missing, PLATFORM)
        _pip("download", "--only-binary=:all:", "--no-deps", "--platform", PLATFORM, "--python-version",
             PYTHON_VERSION, "--implementation", "cp", "--dest", str(cache), *missing)
    return [wheel for n, v in pins.items() for wheel in cached(n, v)]


def _install(wheels: list[Path], target: Path) -> None:
    # pip itself unpacks the wheels (it knows their layout); no index, only the cached files.
    _pip("install", "--no-deps", "--no-index", "--no-compile", "--only-binary=:all:", "--platform", PLATFORM,
         "--python-version", PYTHON_VERSION, "--implementation", "cp", "--target", str(target),
         *map(str, wheels))


def _trim(root: Path) -> None:
    for pattern in TRIM:
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _copy_sources(root: Path, sources: tuple[str, ...] = SOURCES) -> None:
    package = Path(__file__).resolve().parents[1]  # include/flightdeck
    for relative in sources:
        target = root / "flightdeck" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / relative, target)


def platform_tree(cache: str | Path | None = None, pins: dict[str, str] | None = None) -> Path:
    """The wheels of `pins` installed for Lambda's platform, trimmed and byte-compiled, kept
    beside them in the wheel cache: pip and the compiler run once per set of wheels, later
    builds copy the tree (a build took ~4 s less). Keyed by the wheels, the trim list and
    this Python; a finished tree appears at once (renamed into place), so concurrent builds
    never see half of one."""
    cache = Path(cache) if cache else default_wheel_cache()
    wheels = fetch_wheels(cache, {**LAMBDA_PINS, **(pins or {})})
    key = hashlib.sha256(json.dumps([sorted(w.name for w in wheels), TRIM, sys.version_info[:2]]).encode())
    tree = cache / f"site-{key.hexdigest()[:16]}"
    if (tree / _COMPLETE).is_file():
        return tree
    staging = Path(tempfile.mkdtemp(prefix=f"{tree.name}.", dir=cache))
    try:
        _install(wheels, staging)
        _trim(staging)
        _compile(staging, staging)
        (staging / _COMPLETE).write_text("")
        try:
            staging.rename(tree)
        except OSError:  # a concurrent build finished it first: use theirs
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def _compile(directory: Path, package_root: Path) -> None:
    """Byte-compile everything: /var/task is read-only, so Python cannot cache bytecode there
    and would compile every module at every cold start. Unchecked-hash .pyc stay valid whatever
    mtimes the zip gives the sources. The file names inside them are written as under
    /var/task (where Lambda unzips), not this build's temporary folder, so the same inputs
    give the same zip."""
    compileall.compile_dir(str(directory), quiet=1, workers=1, stripdir=str(package_root), prependdir=LAMBDA_TASK_ROOT,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def _write_zip(root: Path, zip_path: Path) -> int:
    """A deterministic zip of `root`; returns the unzipped size."""
    unzipped = 0
    files = sorted(p for p in root.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=_ZIP_TIME)
            info.external_attr = (0o100755 if os.access(path, os.X_OK) and path.suffix != ".py" else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            archive.writestr(info, data, compresslevel=_ZIP_LEVEL)  # a ZipInfo ignores the archive's level
    return unzipped


def check_limits(zipped: int, unzipped: int, origin: str, max_zipped: int = MAX_DIRECT_UPLOAD_BYTES,
                 max_unzipped: int = MAX_UNZIPPED_BYTES) -> None:
    """PackageTooLargeError, with the measured sizes, when a package is over Lambda's limits."""
    problems = []
    if zipped > max_zipped:
        problems.append(f"{zipped / 2**20:.1f} MB zipped (limit {max_zipped / 2**20:.1f} MB for direct upload)")
    if unzipped > max_unzipped:
        problems.append(f"{unzipped / 2**20:.1f} MB unzipped (limit {max_unzipped / 2**20:.1f} MB)")
    if problems:
        raise PackageTooLargeError(
            f"the Lambda package {origin} is {' and '.join(problems)}. Fix: ship the container image "
            "instead (docker/lambda.Dockerfile, up to 10 GB), load the model from S3 "
            "(FLIGHTDECK_MODEL_S3_URI), or upload the zip to S3 (the 250 MB unzipped limit still holds).")


def code_sha256(data: bytes) -> str:
    """A package's digest as Lambda reports its CodeSha256: base64 of the SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def read_checked(zip_path: str | Path, expected_sha256: str) -> bytes:
    """The zip's bytes, after checking them against the digest recorded when it was built.

    Raises PackageIntegrityError naming both digests when the file changed since."""
    try:
        data = Path(zip_path).read_bytes()
    except OSError as exc:
        raise LambdaPackageError(f"cannot read the Lambda package {zip_path}: {exc.strerror}. Fix: rebuild it "
                                 "(serverless_package DAG, from its package task).") from None
    found = code_sha256(data)
    if found != expected_sha256:
        raise PackageIntegrityError(
            f"the Lambda package {zip_path} has CodeSha256 {found}, not {expected_sha256} as packaged and "
            "verified: the file changed after it was checked. Fix: rebuild and verify it again (re-run the "
            "serverless_package DAG from its package task) and find what wrote to the staging folder.")
    return data


def build_package(model: bytes, model_name: str, model_version: str, out_dir: str | Path, *,
                  wheel_cache: str | Path | None = None, pins: dict[str, str] | None = None,
                  max_zipped: int = MAX_DIRECT_UPLOAD_BYTES, max_unzipped: int = MAX_UNZIPPED_BYTES) -> PackageResult:
    """Build `lambda-<model>-<version>.zip` in `out_dir`; PackageTooLargeError over the limits."""
    pins = {**LAMBDA_PINS, **(pins or {})}
    tree = platform_tree(wheel_cache, pins)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"lambda-{model_name}-{model_version}.zip"
    with tempfile.TemporaryDirectory(prefix="flightdeck-lambda-") as tmp:
        root = Path(tmp) / "package"
        shutil.copytree(tree, root, ignore=shutil.ignore_patterns(_COMPLETE))
        _copy_sources(root)
        (root / "model.onnx").write_bytes(model)
        (root / "model.json").write_text(json.dumps({"model_name": model_name, "model_version": str(model_version),
                                                     "pins": pins}, sort_keys=True))
        _compile(root / "flightdeck", root)  # the platform tree is compiled already
        unzipped = _write_zip(root, zip_path)
    data = zip_path.read_bytes()
    check_limits(len(data), unzipped, str(zip_path), max_zipped, max_unzipped)
    result = PackageResult(str(zip_path), len(data), unzipped, code_sha256(data), model_name, str(model_version), pins)
    log.info("built %s: %.1f MB zipped, %.1f MB unzipped", zip_path, len(data) / 2**20, unzipped / 2**20)
    return result


def package_registered_model(registry, model_name: str, ref: str, out_dir: str | Path, **options) -> PackageResult:
    """Build the package of a registered version (number or alias) from the MLflow registry."""
    version, model = registry.download_onnx(model_name, registry.resolve(model_name, ref).version)
    return build_package(model, model_name, version, out_dir, **options)


def extract(zip_path: str | Path, target: str | Path) -> Path:
    """Unzip a package (as Lambda does into /var/task); returns the folder."""
    target = Path(target)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


# --- source packages: Google Cloud Functions and Azure Functions ------------------------------
#
# Both platforms build the environment themselves from the package's requirements.txt (Cloud
# Build's Python buildpack; the Functions host's remote build, SCM_DO_BUILD_DURING_DEPLOYMENT),
# on Linux images new enough for today's manylinux wheels (glibc >= 2.28). So the package holds
# code, model and a requirements.txt pinned to the versions installed here: the versions the
# verification ran with.

GCF_MAIN = '''"""Google Cloud Functions entry point (`--entry-point score`, HTTP trigger)."""

from flightdeck.serverless.gcf_handler import score

__all__ = ["score"]
'''

AZURE_FUNCTION_APP = '''"""Azure Functions entry point (Python v2 programming model): the app the host indexes."""

from flightdeck.serverless.azure_handler import build_app

app = build_app()
'''

# The Functions host's configuration: no route prefix (the paths are the gateway's
# /invocations and /infer), the HTTP extension's defaults otherwise.
AZURE_HOST_JSON = {"version": "2.0",
                   "extensions": {"http": {"routePrefix": ""}},
                   "logging": {"logLevel": {"default": "Warning", "Function": "Information"}}}


@dataclass(frozen=True)
class SourcePlatform:
    """What a source package holds and the size limits checked before it is written out."""

    name: str
    handler: str                       # the adapter module under flightdeck/
    files: dict[str, str]              # entry files at the package root
    requirements: tuple[str, ...]      # distributions pinned to the installed versions
    max_zipped: int
    max_unzipped: int                  # sources + the modules requirements.txt installs
    limit_source: str


GCF = SourcePlatform(
    name="gcf", handler="serverless/gcf_handler.py", files={"main.py": GCF_MAIN},
    requirements=("functions-framework", "onnxruntime", "numpy", "orjson"),
    # cloud.google.com/functions/quotas, "Max deployment size": 100 MB compressed for the
    # sources, 500 MB uncompressed for the sources plus the modules they install.
    max_zipped=100 * 2**20, max_unzipped=500 * 2**20,
    limit_source="Cloud Functions quotas: 100 MB compressed sources, 500 MB uncompressed sources plus modules")

AZURE = SourcePlatform(
    name="azure", handler="serverless/azure_handler.py",
    files={"function_app.py": AZURE_FUNCTION_APP, "host.json": json.dumps(AZURE_HOST_JSON, indent=2) + "\n"},
    requirements=("azure-functions", "onnxruntime", "numpy", "orjson"),
    # Azure documents no per-package cap for zip deployment; the package and its remote build
    # land in the app's local storage, which is 500 MB on the smallest plans (Kudu's temp
    # storage). A limit of our own, checked the same way: 100 MB zipped, 500 MB installed.
    max_zipped=100 * 2**20, max_unzipped=500 * 2**20,
    limit_source="flightdeck's own limit for Azure zip deployment: 100 MB zipped, 500 MB installed")

SOURCE_PLATFORMS = {p.name: p for p in (GCF, AZURE)}


def installed_pins(names: tuple[str, ...]) -> dict[str, str]:
    """`{name: version}` of distributions installed in this interpreter (what was verified)."""
    from importlib import metadata

    pins = {}
    for name in names:
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise LambdaPackageError(f"{name} is not installed here, so the package cannot pin the version it was "
                                     "verified with. Fix: install requirements.txt (pip install -r "
                                     "requirements.txt).") from None
    return pins


def installed_size(names: tuple[str, ...]) -> int:
    """Bytes the distributions and everything they require take once installed (measured on
    this machine's installation: what the platform's build would put beside the sources)."""
    import re
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    total = 0
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement not installed here
        for file in dist.files or ():
            try:
                total += file.locate().stat().st_size
            except OSError:
                pass
        todo.extend(r for r in (dist.requires or ()) if "extra ==" not in r)
    return total


def check_source_limits(platform: SourcePlatform, zipped: int, unzipped: int, origin: str) -> None:
    """PackageTooLargeError, with the measured sizes and the limit's source, over the limits."""
    problems = []
    if zipped > platform.max_zipped:
        problems.append(f"{zipped / 2**20:.1f} MB zipped (limit {platform.max_zipped / 2**20:.0f} MB)")
    if unzipped > platform.max_unzipped:
        problems.append(f"{unzipped / 2**20:.1f} MB unzipped with its modules "
                        f"(limit {platform.max_unzipped / 2**20:.0f} MB)")
    if problems:
        raise PackageTooLargeError(
            f"the {platform.name} package {origin} is {' and '.join(problems)} ({platform.limit_source}). Fix: "
            "load the model from storage at start instead of packaging it, or deploy a container image.")


def build_source_package(model: bytes, model_name: str, model_version: str, out_dir: str | Path,
                         platform: str | SourcePlatform) -> PackageResult:
    """Build `<platform>-<model>-<version>.zip`: the entry files, the shared core and the
    platform's adapter, the model and a pinned requirements.txt. Deterministic like the Lambda
    zip (same inputs, same digest); PackageTooLargeError over the platform's limits."""
    if isinstance(platform, str):
        if platform not in SOURCE_PLATFORMS:
            from flightdeck.errors import ConfigError

            raise ConfigError("platform", f"{platform!r} is not a source-package platform",
                              f"pick one of {sorted(SOURCE_PLATFORMS)} (Lambda: build_package)")
        platform = SOURCE_PLATFORMS[platform]
    pins = installed_pins(platform.requirements)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{platform.name}-{model_name}-{model_version}.zip"
    with tempfile.TemporaryDirectory(prefix=f"flightdeck-{platform.name}-") as tmp:
        root = Path(tmp) / "package"
        root.mkdir()
        _copy_sources(root, (*CORE_SOURCES, platform.handler))
        for name, text in platform.files.items():
            (root / name).write_text(text)
        (root / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
        (root / "model.onnx").write_bytes(model)
        (root / "model.json").write_text(json.dumps({"model_name": model_name, "model_version": str(model_version),
                                                     "platform": platform.name, "pins": pins}, sort_keys=True))
        sources = _write_zip(root, zip_path)
    data = zip_path.read_bytes()
    check_source_limits(platform, len(data), sources + installed_size(platform.requirements), str(zip_path))
    result = PackageResult(str(zip_path), len(data), sources, code_sha256(data), model_name, str(model_version), pins)
    log.info("built %s: %.1f MB zipped", zip_path, len(data) / 2**20)
    return result


def package_platform(platform: str, model: bytes, model_name: str, model_version: str, out_dir: str | Path,
                     **options) -> PackageResult:
    """One entry for the three platforms: `lambda` (wheels included), `gcf` or `azure` (sources)."""
    if platform == "lambda":
        return build_package(model, model_name, model_version, out_dir, **options)
    return build_source_package(model, model_name, model_version, out_dir, platform)


def platform_of(root: str | Path) -> str:
    """Which platform an unzipped package is for, from its entry files."""
    root = Path(root)
    if (root / "function_app.py").is_file():
        return "azure"
    if (root / "main.py").is_file():
        return "gcf"
    return "lambda"
