"""The one definition of a local SGD step, shared by `TorchApp` and the simulation's kernels.

A batch's objective is its mean per-example loss plus FedProx's `mu / 2 * ||w - w_start||^2`
(Li et al. 2020; defined in `fedcore.training.proximal`, which DP-SGD shares), and the step is
`w -= learning_rate * grad` (with momentum `m`, PyTorch's `torch.optim.SGD` rule:
`v = m * v + grad`, `w -= learning_rate * v`). The sequential backend
(`fedcore.sim.backends.sequential`) and the deployed `TorchApp` call `sgd_step`; the vectorised
backend applies the same objective to stacked parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fedcore.training.proximal import proximal_term


def objective(
    mean_loss: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    start: Mapping[str, torch.Tensor],
    mu: float,
) -> torch.Tensor:
    """The loss a local step descends: `mean_loss`, plus the proximal term when `mu > 0`."""
    return mean_loss + proximal_term(params, start, mu) if mu else mean_loss


class SGD:
    """Plain SGD (optionally with momentum) over named tensors, without `torch.optim`.

    Args:
        learning_rate: the step size.
        momentum: 0 for plain SGD; velocity buffers start at the first gradient.
    """

    def __init__(self, *, learning_rate: float, momentum: float = 0.0) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self._velocity: dict[str, torch.Tensor] = {}

    def step(self, params: Mapping[str, torch.Tensor], loss: torch.Tensor) -> None:
        """Differentiate `loss` with respect to `params` and take one step in place."""
        names = list(params)
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        with torch.no_grad():
            for name, grad in zip(names, grads):
                params[name].sub_(self._direction(name, grad), alpha=self.learning_rate)

    def _direction(self, name: str, grad: torch.Tensor) -> torch.Tensor:
        if not self.momentum:
            return grad
        velocity = self._velocity.get(name)
        if velocity is None:
            self._velocity[name] = velocity = grad.detach().clone()
        else:
            velocity.mul_(self.momentum).add_(grad)
        return velocity


def sgd_step(
    params: Mapping[str, torch.Tensor],
    start: Mapping[str, torch.Tensor],
    mean_loss: torch.Tensor,
    *,
    optimizer: SGD,
    mu: float,
) -> None:
    """One local step: descend `objective(mean_loss, params, start, mu)` with `optimizer`."""
    optimizer.step(params, objective(mean_loss, params, start, mu))


def named_trainable(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters that require gradients, by state-dict name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def detached_copy(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached clones of `params` (a step's FedProx anchor)."""
    return {name: t.detach().clone() for name, t in params.items()}

