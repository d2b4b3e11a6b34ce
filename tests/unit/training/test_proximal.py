"""FedProx's proximal term is defined once: DP-SGD's gradient of it is autograd's gradient of
the term plain SGD descends, with the sign that pulls weights back to the global model."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import fedcore
from fedcore.training.proximal import proximal_gradient, proximal_term


def test_the_dp_gradient_is_the_gradient_of_the_term() -> None:
    gen = torch.Generator().manual_seed(0)
    params = {n: torch.randn(3, 2, generator=gen).requires_grad_() for n in ("w", "b")}
    start = {n: torch.randn(3, 2, generator=gen) for n in params}

    proximal_term(params, start, 0.7).backward()

    for name, value in params.items():
        assert value.grad is not None
        torch.testing.assert_close(value.grad, proximal_gradient(value.detach(), start[name], 0.7))


def test_a_step_along_the_gradient_moves_toward_the_start() -> None:
    w, start = torch.tensor([2.0, -1.0]), torch.zeros(2)

    stepped = w - 0.1 * proximal_gradient(w, start, 1.0)

    assert stepped.norm() < w.norm()


def test_training_imports_no_trainer() -> None:
    root = Path(fedcore.__file__).parent / "training"
    imported = [
        node.module for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    ]

    assert not [m for m in imported if m.startswith(("fedcore.client", "fedcore.dp",
                                                     "fedcore.sim"))]
