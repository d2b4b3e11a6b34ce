"""Flag value types that refuse a bad value with one line naming what is wrong."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from fedcore.transport.probe import MAX_PORT, AddressError, split_address

N = TypeVar("N", int, float)


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer flag that must be >= `low`."""

    def parse(text: str) -> int:
        value = _number(int, text, "an integer")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def float_above(low: float) -> Callable[[str], float]:
    """A number flag that must be > `low` (e.g. a duration: > 0)."""

    def parse(text: str) -> float:
        value = _number(float, text, "a number")
        if not value > low:
            raise argparse.ArgumentTypeError(f"must be > {low:g}, got {text}")
        return value

    return parse


def port(text: str) -> int:
    """A TCP port, 0..65535 (0: off, or any free port)."""
    value = _number(int, text, "a port number")
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port {value} is out of range: use 0..{MAX_PORT}")
    return value


def address(text: str) -> str:
    """host:port, with the port in range."""
    try:
        split_address(text)
    except AddressError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def partition(text: str) -> int | str:
    """A partition index (>= 0) or "auto"."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an index or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (or auto), got {value}")
    return value


def _number(kind: type[N], text: str, what: str) -> N:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
