"""Errors of the edge exports, bundles and agent (all user-fixable FlightdeckErrors)."""

from __future__ import annotations

from flightdeck.errors import FlightdeckError


class EdgeError(FlightdeckError):
    """Base class of edge errors."""


class BundleError(EdgeError):
    """A bundle cannot be trusted: bad signature, wrong hash or size, malformed manifest."""


class StoreError(EdgeError):
    """The artifact store cannot be reached or lacks a key."""


class EdgeInputError(EdgeError):
    """Rows handed to an edge model lack a column or hold a value of the wrong type."""


class GateError(EdgeError):
    """An export missed a gate; the message names each artifact and by how much it missed."""

    def __init__(self, misses: list[str]) -> None:
        self.misses = misses
        super().__init__("edge export gate(s) missed: " + "; ".join(misses)
                         + ". Fix: keep the float exports exact and retrain/re-distil until the "
                           "quantised models are within the AUC budget (or loosen the gate deliberately).")


class PointerError(BundleError):
    """A channel pointer cannot be trusted: unsigned, altered, expired, for another model or
    channel, older than one already seen, or a downgrade without a signed rollback."""
