"""The root of fedcore's exceptions: `except FedcoreError` catches any error fedcore raises.

Each fedcore exception also keeps the built-in base it had (e.g. `WireError` is a `ValueError`),
so handlers written for those still catch it.
"""

from __future__ import annotations


class FedcoreError(Exception):
    """Base class of every exception fedcore defines."""
