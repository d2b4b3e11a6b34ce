"""A `ClientApp` for PyTorch: a module, a loss, and data loaders; trains on CPU or GPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from fedcore.client.app import ClientAppError, DeclineTask, EvalResult, FitResult
from fedcore.client.floor import LocalDPPlan
from fedcore.client.sgd import SGD, detached_copy, named_trainable, sgd_step
from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.budget import Budget, plan_task
from fedcore.dp.opacus import (
    HistoryEntry,
    train_private,
)
from fedcore.protocol.messages import LocalDPConfig, TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.storage.accountant_file import open_accountant

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
    """Federated training of one torch module with SGD; FedProx when the task sets mu > 0;
    DP-SGD (Opacus) when the task carries local DP settings.

    Args:
        model: the module; its state dict names are the names on the wire.
        train_loader: local training data, yielding (inputs, targets).
        test_loader: local evaluation data; None makes evaluation report on the training data.
        loss_fn: the batch's mean loss (plain and DP-SGD alike); defaults to cross-entropy.
        device: "cpu", "cuda", "cuda:N" or "auto".
        momentum: SGD momentum (the optimizer is recreated each round).
        privacy_dir: where the DP accountant persists across rounds and restarts (the
            client's state directory); None keeps it in memory for this process only.
        privacy_budget: a local cap on epsilon (at the task's delta); tasks that would pass
            it, or the coordinator's target epsilon, are declined for good (the smaller of the
            two is the limit).
        secure_rng: DP-SGD draws its batches and noise from fresh OS entropy each step with
            Opacus' hardened noise (`fedcore.dp.opacus`: what that guarantees); pass it
            together with `run_client(secure_rng=True)`.
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
        privacy_dir: Path | None = None,
        privacy_budget: float | None = None,
        secure_rng: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.privacy_dir = privacy_dir
        self.privacy_budget = privacy_budget
        self.secure_rng = secure_rng
        self._accountant: PrivacyAccountant | None = None
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
        if config.local_dp is not None:
            return self._fit_private(params, config, config.local_dp)
        return self._fit_plain(config, None)

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, npt.NDArray[np.float64]]) -> FitResult:
        """`fit` with SCAFFOLD's correction: each step descends the loss plus
        `sum(correction[n] * w[n])`, whose gradient adds `correction[n]` to tensor n's
        (`fedcore.client.scaffold`); reports the steps taken.

        Raises:
            ClientAppError: a correction for a tensor that is not a trainable parameter.
        """
        load_params(self.model, params)
        trainable = named_trainable(self.model)
        unknown = sorted(set(correction) - set(trainable))
        if unknown:
            raise ClientAppError(f"SCAFFOLD controls {unknown}, which are not trainable "
                                 "parameters of this model")
        first = next(iter(trainable.values()))
        terms = {n: torch.as_tensor(v, dtype=trainable[n].dtype, device=first.device)
                 for n, v in correction.items()}
        return self._fit_plain(config, terms)

    def _fit_plain(self, config: TrainConfig,
                   correction: dict[str, torch.Tensor] | None) -> FitResult:
        params_now = named_trainable(self.model)
        anchor = detached_copy(params_now)
        opt = SGD(learning_rate=config.learning_rate, momentum=self.momentum)
        self.model.train()
        started = time.monotonic()
        total_loss, seen, steps = 0.0, 0, 0
        for _ in range(config.local_epochs):
            if steps and config.max_train_s and time.monotonic() - started > config.max_train_s:
                break  # out of time: no later epoch takes a step (the first always takes one)
            for inputs, targets in self.train_loader:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                loss = self.loss_fn(self.model(inputs), targets)
                total_loss += float(loss.detach()) * len(targets)
                seen += len(targets)
                if correction is not None:  # a linear term: its gradient is the correction
                    loss = loss + sum((correction[n] * params_now[n]).sum() for n in correction)
                sgd_step(params_now, anchor, loss, optimizer=opt, mu=config.proximal_mu)
                steps += 1
                if config.max_train_s and time.monotonic() - started > config.max_train_s:
                    break
        num_examples = len(self.train_loader.dataset)  # type: ignore[arg-type]
        return FitResult(
            params=state_to_params(self.model),
            num_examples=num_examples,
            metrics={"loss": total_loss / max(seen, 1)},
            local_steps=steps,
        )

    @property
    def accountant(self) -> PrivacyAccountant:
        """This client's privacy accountant (opened from `privacy_dir` on first use)."""
        if self._accountant is None:
            self._accountant = (
                open_accountant(self.privacy_dir) if self.privacy_dir is not None
                else PrivacyAccountant()
            )
        return self._accountant

    def plan_local_dp(self, config: TrainConfig) -> LocalDPPlan | None:
        """What `config`'s DP-SGD would cost this client, before training (None: no DP).

        Raises:
            ValueError: no noise multiplier reaches the task's target epsilon.
        """
        dp = config.local_dp
        if dp is None:
            return None
        planned = self._planned(config, dp)
        return LocalDPPlan(
            noise_multiplier=planned.noise_multiplier,
            epsilon_spent=self.accountant.epsilon(dp.delta),
            epsilon_after=self.accountant.epsilon_after(planned, dp.delta),
            delta=dp.delta,
        )

    def _planned(self, config: TrainConfig, dp: LocalDPConfig) -> HistoryEntry:
        return plan_task(dp, batches=len(self.train_loader), epochs=config.local_epochs,
                         local_epochs=config.local_epochs)

    def _fit_private(self, params: Params, config: TrainConfig, dp: LocalDPConfig) -> FitResult:
        loader = self.train_loader
        planned = self._planned(config, dp)
        noise = planned.noise_multiplier
        # The smaller of the coordinator's target and this client's own budget is the limit.
        limits = [b for b in (dp.target_epsilon or None, self.privacy_budget) if b is not None]
        if limits:
            verdict = Budget(epsilon=min(limits), delta=dp.delta).check(self.accountant, planned)
            if not verdict.allowed:
                raise DeclineTask(verdict.reason, permanent=True)
        global_state = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
        result = train_private(
            model=self.model,
            optimizer_factory=lambda ps: torch.optim.SGD(
                ps, lr=config.learning_rate, momentum=self.momentum
            ),
            data_loader=loader,
            noise_multiplier=noise,
            max_grad_norm=dp.max_grad_norm,
            epochs=config.local_epochs,
            accountant=self.accountant,
            delta=dp.delta,
            device=self.device,
            criterion=self.loss_fn,
            proximal_mu=config.proximal_mu,
            global_state=global_state if config.proximal_mu > 0 else None,
            secure_mode=self.secure_rng,
        )
        return FitResult(
            params={k: v.detach().cpu().numpy() for k, v in result.state.items()},
            num_examples=result.num_examples,
            metrics={"loss": result.loss, "epsilon": result.epsilon},
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
