"""FedProx's proximal term (Li et al. 2020), defined once for every local trainer.

Plain SGD descends the term itself (`proximal_term`, added to the batch's loss: autograd gives
its gradient); DP-SGD adds its gradient (`proximal_gradient`) to the privatised gradient, as
data-independent post-processing, since the term must not be clipped or noised with the
examples' gradients. The two agree: `proximal_gradient` is the gradient of `proximal_term`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def proximal_term(
    params: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor], mu: float
) -> torch.Tensor:
    """`mu / 2 * ||w - w_start||^2` over all tensors."""
    squares = [((params[name] - start[name]) ** 2).sum() for name in params]
    return torch.stack(squares).sum() * (mu / 2)


def proximal_gradient(param: torch.Tensor, start: torch.Tensor, mu: float) -> torch.Tensor:
    """The gradient of `proximal_term` with respect to one tensor: `mu * (w - w_start)`."""
    return (param - start) * mu
