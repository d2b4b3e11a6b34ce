"""Errors raised while decoding or validating what arrived on the wire."""

from fedcore.errors import FedcoreError


class WireError(FedcoreError, ValueError):
    """A message is malformed: wrong layout, bad values, or too large. Nothing was changed."""


class PayloadTooLarge(WireError):
    """A payload exceeds its announced size or a configured limit."""
