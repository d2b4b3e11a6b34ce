"""The coordinator's running account of distributed DP: each round priced at its own settings.

Guarantee. A run's distributed-DP rounds are a sequential composition of mechanisms, one per
round, each with the noise multiplier z, the integer-domain sensitivity Δ₂ and the dimension d
that round really used (Δ₂ = s·C + √d carries the clip norm C, the quantiser range c and the
levels L that the bit width and `max_clients` allow, s = L/(2c); see
`fedcore.dp.secagg_noise`). Their RDP curves add up (Mironov 2017, Prop. 1), so ε after any
history is the sum of the per-round curves converted once at δ. Changing z, C or the bit
settings across a restart therefore prices only the rounds that ran with the new settings;
the rounds before keep the price they were released at, provided the ledger is restored from
the checkpoint (`fedcore.engine.checkpoint`) rather than started afresh.

Per round, SKELLAM rounds cost the Skellam RDP bound at exactly t survivors
(`fedcore.dp.distributed.skellam_rdp`); DISCRETE_GAUSSIAN rounds cost the Gaussian
APPROXIMATION (`gaussian_approx_epsilon`, sample rate 1), and any history containing one is
reported as `distributed_epsilon_approx` rather than `distributed_epsilon`. All curves are
evaluated at the integer orders the Skellam bound holds for (`SKELLAM_ORDERS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from fedcore.dp.distributed import SKELLAM_ORDERS, DistributedNoise, skellam_rdp
from fedcore.protocol.distributed_dp import IntegerNoise

EXACT_KEY = "distributed_epsilon"
APPROX_KEY = "distributed_epsilon_approx"


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedStep:
    """`rounds` released rounds of distributed DP at one setting.

    Args:
        kind: the integer noise the clients added.
        noise_multiplier: z; the noise std at t survivors is z·Δ₂.
        l2_sensitivity: Δ₂ in the integer domain (clip, quantiser and bits folded in).
        dim: d, the length of each client's vector (the weight slot included).
        rounds: how many consecutive rounds ran at this setting.
    """

    kind: IntegerNoise
    noise_multiplier: float
    l2_sensitivity: float
    dim: int
    rounds: int = 1

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "l2_sensitivity"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.dim < 1 or self.rounds < 1:
            raise ValueError(f"dim and rounds must be >= 1, got {self.dim}, {self.rounds}")

    def rdp(self) -> npt.NDArray[np.float64]:
        """This step's RDP at `SKELLAM_ORDERS` (all of its rounds)."""
        if self.kind is IntegerNoise.SKELLAM:
            noise = DistributedNoise(noise_multiplier=self.noise_multiplier,
                                     l2_sensitivity=self.l2_sensitivity, min_survivors=1)
            return self.rounds * skellam_rdp(noise, dim=self.dim)
        from fedcore.dp.opacus import HistoryEntry, rdp_curve

        return rdp_curve(HistoryEntry(noise_multiplier=self.noise_multiplier, sample_rate=1.0,
                                      steps=self.rounds), SKELLAM_ORDERS)

    def same_setting(self, other: DistributedStep) -> bool:
        """Whether `other` ran at exactly this setting (so the two merge)."""
        return replace(other, rounds=self.rounds) == self


class DistributedAccountant:
    """Every distributed-DP round released so far, with the setting it ran at."""

    def __init__(self, steps: Iterable[DistributedStep] = ()) -> None:
        self._steps: list[DistributedStep] = []
        for step in steps:
            self.record(step)

    @property
    def steps(self) -> tuple[DistributedStep, ...]:
        """The history, consecutive rounds at one setting merged."""
        return tuple(self._steps)

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return sum(step.rounds for step in self._steps)

    def record(self, step: DistributedStep) -> None:
        """Add `step`'s rounds at their own setting."""
        last = self._steps[-1] if self._steps else None
        if last is not None and last.same_setting(step):
            self._steps[-1] = replace(last, rounds=last.rounds + step.rounds)
        else:
            self._steps.append(step)

    @property
    def exact(self) -> bool:
        """True when every round is SKELLAM (a bound, not an approximation)."""
        return all(step.kind is IntegerNoise.SKELLAM for step in self._steps)

    def epsilon(self, delta: float) -> tuple[str, float]:
        """(history key, ε at `delta`) for all rounds so far: `distributed_epsilon` when exact,
        `distributed_epsilon_approx` otherwise; ε is 0 before any round."""
        key = EXACT_KEY if self.exact else APPROX_KEY
        if not self._steps:
            return key, 0.0
        from fedcore.dp.opacus import epsilon_from_rdp

        total = sum((step.rdp() for step in self._steps),
                    np.zeros(len(SKELLAM_ORDERS)))
        return key, epsilon_from_rdp(SKELLAM_ORDERS, total, delta=delta)


def steps_to_json(steps: Iterable[DistributedStep]) -> list[dict[str, Any]]:
    """The steps as JSON-ready mappings (for checkpoints)."""
    return [{"kind": s.kind.value, "noise_multiplier": s.noise_multiplier,
             "l2_sensitivity": s.l2_sensitivity, "dim": s.dim, "rounds": s.rounds} for s in steps]


def steps_from_json(items: Any) -> tuple[DistributedStep, ...]:
    """Parse `steps_to_json`'s output.

    Raises:
        ValueError: an item is not a step this version understands.
    """
    try:
        if not isinstance(items, list):
            raise TypeError(f"expected a list, got {type(items).__name__}")
        return tuple(
            DistributedStep(kind=IntegerNoise(item["kind"]),
                            noise_multiplier=float(item["noise_multiplier"]),
                            l2_sensitivity=float(item["l2_sensitivity"]),
                            dim=_int(item["dim"]), rounds=_int(item["rounds"]))
            for item in items
        )
    except (KeyError, TypeError) as err:
        raise ValueError(f"bad distributed DP history entry: {err}") from err


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value
