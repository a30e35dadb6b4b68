"""Triton's gRPC client as a user runs it, in a process of its own: `python triton_grpc_call.py
HOST:PORT ROWS.json` prints a JSON report on stdout.

tritonclient.grpc registers the OIP v2 messages (package `inference`) in protobuf's default
descriptor pool, as the gateway's generated stubs do; the two cannot be imported into one test
process, so the client runs here, which is also how a user meets the gateway.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException


def inputs(frame: pd.DataFrame) -> list:
    """One [n, 1] input per feature, as a user fills them: FP64 numbers, BYTES strings."""
    tensors = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        numeric = values.dtype.kind == "f"
        array = (values.astype(np.float64) if numeric else values.astype(np.object_)).reshape(-1, 1)
        tensor = triton_grpc.InferInput(column, list(array.shape), "FP64" if numeric else "BYTES")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def main(url: str, rows_file: str) -> dict:
    frame = pd.DataFrame(json.loads(open(rows_file).read()))
    client = triton_grpc.InferenceServerClient(url=url)
    try:
        report = {"ready": client.is_server_ready()}
        result = client.infer("credit", inputs(frame))  # raw_input_contents, the client's default
        report["raw_outputs"] = len(result.get_response().raw_output_contents)
        report["scores"] = result.as_numpy("probabilities").tolist()
        try:
            client.infer("credit", inputs(frame), outputs=[triton_grpc.InferRequestedOutput("logits")])
            report["unknown_output_error"] = None
        except InferenceServerException as exc:
            report["unknown_output_error"] = str(exc)
        return report
    finally:
        client.close()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
