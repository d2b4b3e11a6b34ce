"""Local DP-SGD bookkeeping for virtual clients: noise calibration, budgets and ε per client.

A deployed client (`fedcore.client.torch_app.TorchApp`) keeps an Opacus history and declines
for good a task that would take it past its budget. A virtual client does the same with a
compact state: its RDP curve at Opacus' orders (RDP of a composition is the sum of the
curves, so ε equals what Opacus' RDP accountant reports for the full history). The verdict and
the reason it gives are the deployed client's: `fedcore.dp.budget.Budget`. Only clients that
have trained privately hold state, in the population's `ClientStateStore`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcore.dp.budget import Budget, plan_task
from fedcore.dp.opacus import (
    HistoryEntry,
    epsilon_from_rdp,
    rdp_curve,
    rdp_orders,
)
from fedcore.protocol.messages import LocalDPConfig
from fedcore.sim.population import ClientStateStore

_ORDERS = tuple(rdp_orders())


@dataclass(frozen=True, slots=True)
class PrivateTask:
    """One client's DP-SGD task: its noise, the accountant entry, ε after it, and the budget's
    verdict (`refusal` is what the client tells the coordinator when it is not `allowed`)."""

    noise_multiplier: float
    entry: HistoryEntry
    epsilon_after: float
    allowed: bool
    refusal: str = ""


class CurveAccountant:
    """An accountant over a stored RDP curve, for `Budget.check` (ε from Opacus' formula)."""

    def __init__(self, rdp: npt.NDArray[np.float64]) -> None:
        self.rdp = rdp

    def epsilon(self, delta: float) -> float:
        """ε spent so far at `delta`."""
        return epsilon_from_rdp(_ORDERS, self.rdp, delta=delta) if self.rdp.any() else 0.0

    def epsilon_after(self, entry: HistoryEntry, delta: float) -> float:
        """ε at `delta` once `entry` is added to the curve."""
        return epsilon_from_rdp(_ORDERS, self.rdp + _curve(entry), delta=delta)


class ClientPrivacy:
    """Plans and records virtual clients' DP-SGD tasks against their stored RDP curves."""

    def __init__(self, store: ClientStateStore) -> None:
        self._store = store

    def plan(
        self, index: int, num_examples: int, *, dp: LocalDPConfig, batch_size: int,
        epochs: int, local_epochs: int,
    ) -> PrivateTask:
        """What client `index` would spend on a task of `epochs` epochs, and whether its
        budget (`dp.target_epsilon`, when set) allows it."""
        batches = math.ceil(num_examples / batch_size)
        entry = plan_task(dp, batches=batches, epochs=epochs, local_epochs=local_epochs)
        noise = entry.noise_multiplier
        accountant = CurveAccountant(self._rdp(index))
        if not dp.target_epsilon:
            after = accountant.epsilon_after(entry, dp.delta)
            return PrivateTask(noise_multiplier=noise, entry=entry, epsilon_after=after,
                               allowed=True)
        verdict = Budget(epsilon=dp.target_epsilon, delta=dp.delta).check(accountant, entry)
        return PrivateTask(noise_multiplier=noise, entry=entry,
                           epsilon_after=verdict.epsilon_after, allowed=verdict.allowed,
                           refusal=verdict.reason)

    def record(self, index: int, task: PrivateTask) -> None:
        """Add the task's steps to the client's curve."""
        self._store.put(index, {"rdp": self._rdp(index) + _curve(task.entry)})

    def epsilon(self, index: int, delta: float) -> float:
        """ε the client has spent so far."""
        state = self._store.get(index)
        rdp = None if state is None else np.asarray(state["rdp"], dtype=np.float64)
        return 0.0 if rdp is None else epsilon_from_rdp(_ORDERS, rdp, delta=delta)

    def _rdp(self, index: int) -> npt.NDArray[np.float64]:
        state = self._store.get(index)
        return np.zeros(len(_ORDERS)) if state is None else np.asarray(state["rdp"])


@functools.lru_cache(maxsize=4096)
def _curve(entry: HistoryEntry) -> npt.NDArray[np.float64]:
    curve = rdp_curve(entry, _ORDERS)
    curve.flags.writeable = False
    return curve

