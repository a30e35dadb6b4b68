"""The Azure Functions handler on the Python v2 programming model.

`build_app()` returns the `azure.functions.FunctionApp` that the package's `function_app.py`
exposes as `app`: two HTTP routes, `POST /invocations` (MLflow bodies) and `POST /infer`
(Open Inference Protocol v2), both answered by `score`, an adapter of `serverless.core` like
the Lambda and Cloud Functions handlers (same scores, same 4xx contract). host.json sets the
route prefix to empty, so the paths are the gateway's.

`azure.functions` is imported when the app is built (the Functions host has it loaded).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flightdeck.serverless import core

ROUTES = ("invocations", "infer")


def score(request: Any) -> Any:
    """An `azure.functions.HttpRequest` in, an `azure.functions.HttpResponse` out."""
    import azure.functions as func

    status, answer = core.answer(request.get_body() or b"", urlsplit(request.url).path)
    return func.HttpResponse(core.encode(answer), status_code=status, mimetype="application/json",
                             headers=dict(core.JSON_HEADERS))


def build_app(auth_level: str = "FUNCTION") -> Any:
    """The function app: one HTTP function per route, each calling `score`.

    `auth_level` FUNCTION (a function key in `x-functions-key`), ADMIN or ANONYMOUS (only
    behind something else that authenticates, e.g. API Management)."""
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=getattr(func.AuthLevel, auth_level.upper()))
    for route in ROUTES:
        def handle(req: func.HttpRequest) -> func.HttpResponse:
            return score(req)

        handle.__name__ = f"score_{route}"
        app.route(route=route, methods=["POST"])(handle)
    return app
