"""A `ClientApp` for PyTorch: a module, a loss, and data loaders; trains on CPU or GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fedcore.client.app import ClientAppError, EvalResult, FitResult
from fedcore.messages import TrainConfig
from fedcore.params import Array, Params

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_device(device: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (CUDA when present, else CPU) as a torch device.

    Raises:
        ClientAppError: CUDA was asked for but this torch build or machine has none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClientAppError(
            f"device {device!r} requested but CUDA is not available "
            "(CPU-only torch build or no GPU); use device='cpu' or 'auto'"
        )
    return dev


def state_to_params(module: nn.Module) -> dict[str, Array]:
    """The module's state dict (parameters and buffers) as NumPy arrays on the CPU."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_params(module: nn.Module, params: Params) -> None:
    """Copy `params` into the module's state (names must match its state dict)."""
    state = module.state_dict()
    if list(state) != list(params):
        raise ClientAppError(
            f"parameter names do not match the model's state dict: "
            f"got {list(params)[:5]}..., expected {list(state)[:5]}..."
        )
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))


class TorchApp:
    """Federated training of one torch module with SGD; FedProx when the task sets mu > 0.

    Args:
        model: the module; its state dict names are the names on the wire.
        train_loader: local training data, yielding (inputs, targets).
        test_loader: local evaluation data; None makes evaluation report on the training data.
        loss_fn: defaults to cross-entropy.
        device: "cpu", "cuda", "cuda:N" or "auto".
        momentum: SGD momentum (the optimizer is recreated each round).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train_loader: DataLoader[tuple[torch.Tensor, torch.Tensor]],
        test_loader: DataLoader[tuple[torch.Tensor, torch.Tensor]] | None = None,
        loss_fn: LossFn | None = None,
        device: str = "cpu",
        momentum: float = 0.0,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.loss_fn: LossFn = loss_fn or nn.functional.cross_entropy
        self.momentum = momentum

    def get_parameters(self) -> dict[str, Array]:
        """The module's current state."""
        return state_to_params(self.model)

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        """Train `config.local_epochs` epochs from `params`; stops early at `max_train_s`."""
        load_params(self.model, params)
        anchor = [p.detach().clone() for p in self.model.parameters()]
        opt = torch.optim.SGD(
            self.model.parameters(), lr=config.learning_rate, momentum=self.momentum
        )
        self.model.train()
        started = time.monotonic()
        total_loss, seen = 0.0, 0
        for _ in range(config.local_epochs):
            for inputs, targets in self.train_loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                opt.zero_grad()
                loss = self.loss_fn(self.model(inputs), targets)
                total_loss += float(loss.detach()) * len(targets)
                seen += len(targets)
                if config.proximal_mu > 0:
                    prox = sum(
                        (p - a).pow(2).sum() for p, a in zip(self.model.parameters(), anchor)
                    )
                    loss = loss + 0.5 * config.proximal_mu * prox
                loss.backward()
                opt.step()
                if config.max_train_s and time.monotonic() - started > config.max_train_s:
                    break
        num_examples = len(self.train_loader.dataset)  # type: ignore[arg-type]
        return FitResult(
            params=state_to_params(self.model),
            num_examples=num_examples,
            metrics={"loss": total_loss / max(seen, 1)},
        )

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        """Mean loss and accuracy of `params` on the test loader."""
        load_params(self.model, params)
        loader = self.test_loader or self.train_loader
        self.model.eval()
        total_loss, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                outputs = self.model(inputs)
                total_loss += float(self.loss_fn(outputs, targets)) * len(targets)
                correct += int((outputs.argmax(dim=1) == targets).sum())
                count += len(targets)
        if count == 0:
            raise ClientAppError("the evaluation data set is empty")
        return EvalResult(
            loss=total_loss / count, num_examples=count, metrics={"accuracy": correct / count}
        )
