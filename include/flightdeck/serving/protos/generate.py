"""Regenerate the Python stubs of grpc_predict_v2.proto: `python -m flightdeck.serving.protos.generate`.

protoc runs from the `include/` folder with the proto named by its package path, so the
generated `_pb2_grpc` module imports `flightdeck.serving.protos.grpc_predict_v2_pb2`
absolutely instead of as a top-level `grpc_predict_v2_pb2`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTOS_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PROTOS_DIR.parents[2]  # the folder holding the `flightdeck` package
PROTO = PROTOS_DIR / "grpc_predict_v2.proto"
STUB_NAMES = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(output_root: Path = SOURCE_ROOT) -> list[Path]:
    """Write the stubs under `output_root/flightdeck/serving/protos/` and return their paths."""
    relative_proto = PROTO.relative_to(SOURCE_ROOT)
    out_dir = output_root / relative_proto.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main([
        "grpc_tools.protoc",
        f"--proto_path={SOURCE_ROOT}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        relative_proto.as_posix(),
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed with exit status {status} on {PROTO}")
    return [out_dir / name for name in STUB_NAMES]


def main() -> None:
    """Regenerate the committed stubs in place and list them."""
    for path in generate():
        print(path.relative_to(SOURCE_ROOT))


if __name__ == "__main__":
    sys.exit(main())
