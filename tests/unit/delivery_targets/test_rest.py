"""The REST plumbing the Cloud Run and Azure slot targets share: the bearer header, the time limit,
and a non-2xx answer read into the error the target raises."""

from __future__ import annotations

import json

import pytest

from flightdeck.delivery.targets.rest import TIMEOUT_S, ApiError, BearerRest


class _Response:
    def __init__(self, status: int, body: str) -> None:
        self.status_code, self.text = status, body

    def json(self):
        return json.loads(self.text)


class _Session:
    def __init__(self, response: _Response) -> None:
        self.response, self.calls = response, []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        return self.response


class _Client(BearerRest):
    def __init__(self, token, response: _Response) -> None:
        self.token, self._session = token, _Session(response)

    def default_token(self) -> str:
        return "from-the-environment"


class _Refused(Exception):
    pass


def test_a_call_carries_the_bearer_token_and_the_time_limit():
    client = _Client(lambda: "fresh", _Response(200, "{}"))
    assert client.send("GET", "http://api/x", _Refused, params={"a": "1"}).status_code == 200
    ((method, url, kwargs),) = client.session.calls
    assert (method, url, kwargs) == ("GET", "http://api/x", {"timeout": TIMEOUT_S, "params": {"a": "1"},
                                                             "headers": {"Authorization": "Bearer fresh"}})
    assert _Client("fixed", _Response(200, "")).bearer() == "fixed"
    assert _Client(None, _Response(200, "")).bearer() == "from-the-environment"


@pytest.mark.parametrize(("status", "body", "expected"), [
    (409, '{"error": {"code": "ABORTED", "message": "etag is stale"}}', ApiError(409, "ABORTED", "etag is stale")),
    (404, '{"error": {"message": "no such service"}}', ApiError(404, None, "no such service")),
    (502, "<html>bad gateway</html>", ApiError(502, None, "<html>bad gateway</html>")),
    (500, '["not", "an", "object"]', ApiError(500, None, '["not", "an", "object"]')),
])
def test_a_refusal_is_read_into_the_error_the_target_raises(status, body, expected):
    seen = []

    def error(api_error: ApiError) -> Exception:
        seen.append(api_error)
        return _Refused(api_error.message)

    with pytest.raises(_Refused):
        _Client("t", _Response(status, body)).send("PATCH", "http://api/x", error)
    assert seen == [expected]
