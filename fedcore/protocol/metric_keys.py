"""The metric names fedcore itself reads from clients' results; any other key passes through.

Clients report metrics as a name -> float mapping (`fedcore.protocol.params.Metrics`). These
names have a meaning to the engine, the simulator and the reports, so they are spelt once.
"""

from __future__ import annotations

import enum


class Metric(enum.StrEnum):
    """Metric names with a meaning to fedcore."""

    LOSS = "loss"
    """Training loss (train results) or evaluation loss (evaluate results)."""
    ACCURACY = "accuracy"
    """Evaluation accuracy in [0, 1]."""
    EPSILON = "epsilon"
    """The client's cumulative DP-SGD ε after this task (`fedcore.dp.opacus`)."""
