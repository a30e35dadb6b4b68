"""What the REST targets (Cloud Run, Azure slots) share to call their cloud's API: one requests
session made on first use, a bearer token given as a string or a callable (or, without one, the
target's own default), a time limit on every call, and a non-2xx answer read into an `ApiError`
(status, the API's error code, its message) that the target turns into an error naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 30.0  # every call's connect and read time limit


@dataclass(frozen=True)
class ApiError:
    """A non-2xx answer: its status, and the `error.code` and `error.message` of its JSON body (the
    message falls back to the start of the body when it is not JSON)."""

    status: int
    code: str | None
    message: str

    @classmethod
    def of(cls, response: Any) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        return cls(response.status_code, error.get("code"), error.get("message") or response.text[:300])


class BearerRest:
    """Mixin: calls with `Authorization: Bearer <token>` over `session`.

    The target sets `token` (a string, a callable returning one, or None for `default_token()`)
    and `_session` (None: a new `requests.Session` on first use)."""

    token: str | Callable[[], str] | None
    _session: Any

    @property
    def session(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def default_token(self) -> str:
        """The token when none was given; the target says where it comes from, or why there is none."""
        raise NotImplementedError

    def bearer(self) -> str:
        token = self.token
        if token is None:
            return self.default_token()
        return token() if callable(token) else token

    def send(self, method: str, url: str, error: Callable[[ApiError], Exception], **kwargs: Any) -> Any:
        """The response to `method url`; `error(ApiError)` raised for a non-2xx answer."""
        response = self.session.request(method, url, timeout=TIMEOUT_S,
                                        headers={"Authorization": f"Bearer {self.bearer()}"}, **kwargs)
        if response.status_code >= 300:
            raise error(ApiError.of(response))
        return response
