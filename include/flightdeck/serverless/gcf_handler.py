"""The Google Cloud Functions handler (Functions Framework, HTTP signature).

Entry point `score` (the package's `main.py` re-exports it, so `--entry-point score`): a
Flask request in, `(JSON text, status, headers)` out. Same body formats, scores and error
contract as the Lambda handler: both are thin adapters of `serverless.core`. Flask and the
Functions Framework are the platform's; nothing of theirs is imported here.
"""

from __future__ import annotations

from typing import Any

from flightdeck.serverless import core


def score(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP Cloud Function: score the rows of a POSTed MLflow body (or OIP v2 on `/infer`)."""
    status, answer = core.answer(request.get_data(cache=False), request.path)
    return core.encode(answer), status, dict(core.JSON_HEADERS)
