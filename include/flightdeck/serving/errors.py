"""Errors a gateway caller can cause, each with the HTTP status it maps to.

Every transport (REST, WebSocket, gRPC) maps these the same way; anything else is a bug
and the only thing that may become a 5xx.
"""

from __future__ import annotations

from flightdeck.errors import FlightdeckError


class RequestError(FlightdeckError):
    """A request the gateway refuses. `status` is the HTTP status; `field` names the culprit."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class MalformedRequestError(RequestError):
    """The body is not JSON, or not the shape of any supported protocol."""

    status = 400


class InvalidInputError(RequestError):
    """The rows break the model's schema: missing column, wrong type, NaN, ragged columns."""

    status = 422


class PayloadTooLargeError(RequestError):
    """More rows or bytes than the gateway accepts in one request."""

    status = 413


class OverrideNotAllowedError(RequestError):
    """A request forcing a variant (or a model version) without a valid admin token."""

    status = 403


class OverrideDisabledError(RequestError):
    """A request forcing a variant (or pinning a model version) on an endpoint whose route table
    sets `allow_override: false`: refused, never silently routed by the policy instead."""

    status = 403


class UnknownEndpointError(RequestError):
    """No endpoint, variant or model version of that name in the current route table."""

    status = 404


class NotReadyError(RequestError):
    """The gateway has not loaded its route table and models yet."""

    status = 503


class RouteTableError(RequestError):
    """A route table that does not validate, or names a model that cannot be loaded."""

    status = 422


class VersionConflictError(RequestError):
    """A route table replace that expected a different current version."""

    status = 409


class VariantFailedError(RequestError):
    """The chosen model failed or timed out and the endpoint has no fallback to answer instead.

    Names the variant and model version that failed, so the failure is counted against them."""

    status = 503

    def __init__(self, message: str, variant: str | None = None, model_version: str | None = None) -> None:
        super().__init__(message)
        self.variant = variant
        self.model_version = model_version
