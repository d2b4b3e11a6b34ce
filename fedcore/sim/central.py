"""Server-side evaluation for simulations: the global model on a held-out test set (e.g. the
10k MNIST test images), which published results report, beside federated evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedcore.protocol.params import Params
from fedcore.sim.backends.sequential import LocalData, cross_entropy_per_example


@dataclass(frozen=True, slots=True)
class CentralMetrics:
    """Mean loss and accuracy over the whole test set."""

    loss: float
    accuracy: float


class CentralEvaluator:
    """Evaluates parameters for `model` on `test` in batches of `batch_size`."""

    def __init__(self, model: nn.Module, test: LocalData, *, batch_size: int = 2000) -> None:
        self.model, self.batch_size = model, batch_size
        self.x = torch.as_tensor(np.asarray(test[0]))
        self.y = torch.as_tensor(np.asarray(test[1]), dtype=torch.int64)

    def __call__(self, params: Params) -> CentralMetrics:
        """Loss and accuracy of `params` (not modified)."""
        state = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for begin in range(0, len(self.y), self.batch_size):
                x = self.x[begin : begin + self.batch_size]
                y = self.y[begin : begin + self.batch_size]
                logits = torch.func.functional_call(self.model, state, (x,))
                loss_sum += float(cross_entropy_per_example(logits, y).sum())
                correct += int((logits.argmax(-1) == y).sum())
        return CentralMetrics(loss=loss_sum / len(self.y), accuracy=correct / len(self.y))
