"""The serving benchmark's ceilings: the least a Python server must do to answer one request.

`app` is the ceiling the targets name: a bare FastAPI handler of a few lines around one ONNX
Runtime session (orjson in and out, no routing policy, no metrics, no logging). `asgi_app`
is the same handler without any framework, reported for information: the floor under any
FastAPI service. Both take MLflow's `dataframe_split` body (the one the gateway gets) and
feed one [n, 1] tensor per model input. Run by benchmarks/serving.py under the server
`flightdeck serve` runs (and, for scale, under granian) as

    SERVING_CEILING_MODEL=/path/model.onnx \
        uvicorn serving_ceiling:app --app-dir benchmarks --workers 2 --no-access-log
    SERVING_CEILING_MODEL=/path/model.onnx \
        granian --interface asgi --workers 2 --loop uvloop --working-dir benchmarks serving_ceiling:app
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request, Response

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
_session = ort.InferenceSession(os.environ["SERVING_CEILING_MODEL"], sess_options=_options,
                                providers=["CPUExecutionProvider"])
_TEXT = {i.name for i in _session.get_inputs() if i.type == "tensor(string)"}
_OUTPUT = "probabilities"
_JSON = [(b"content-type", b"application/json")]


def _score(body: bytes) -> tuple[int, bytes]:
    try:
        split = orjson.loads(body)["dataframe_split"]
        values = list(zip(*split["data"], strict=True))  # one tuple per column
        feeds = {name: np.array(values[i], dtype=object if name in _TEXT else np.float64)[:, None]
                 for i, name in enumerate(split["columns"])}
        scores = _session.run([_OUTPUT], feeds)[0][:, 1]
        return 200, orjson.dumps({"predictions": scores.tolist()})
    except Exception as exc:  # the benchmark counts non-2xx answers
        return 400, orjson.dumps({"error": str(exc)})


app = FastAPI()


@app.get("/")
async def ready() -> Response:
    return Response(b'"ok"', media_type="application/json")


@app.post("/")
async def invocations(request: Request) -> Response:
    status, payload = _score(await request.body())
    return Response(payload, status, media_type="application/json")


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, payload = (200, b'"ok"') if scope["method"] != "POST" else _score(body)
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": payload})
