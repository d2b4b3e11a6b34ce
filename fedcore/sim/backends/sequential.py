"""The reference local-training kernel: clients trained one after another on one torch model.

This module also fixes the semantics every backend reproduces exactly:

- a client starts from the global params and runs `local_epochs` epochs of minibatch SGD, or
  its own smaller number of epochs when given one (a straggler's partial work);
- each epoch visits its examples in the order `torch.randperm(n, generator=g)`, where `g` is
  a CPU `torch.Generator` seeded with the client's seed, drawn once per epoch in turn;
- batches are consecutive slices of `batch_size` of that order; the last may be smaller;
- a batch's loss is the mean per-example loss plus `proximal_mu / 2 * ||w - w_global||^2`
  (FedProx), and the step is `w -= learning_rate * grad`: `fedcore.client.sgd.sgd_step`, the
  step the deployed `TorchApp` takes;
- the update is `w_local - w_global`; `train_loss` is the mean per-example loss (without the
  proximal term) over every example visited, each measured before its batch's step;
- with a SCAFFOLD correction d (`TrainJob.corrections`, `fedcore.client.scaffold`) each step's
  objective gains `sum(d[n] * w[n])`, i.e. d is added to the gradient, as `TorchApp` does; this
  kernel alone supports it (the others refuse a job with corrections).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedcore.client.sgd import SGD, sgd_step
from fedcore.protocol.params import Array, Params

LocalData = tuple[npt.NDArray[np.floating], npt.NDArray[np.integer]]
PerExampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainSettings(Protocol):
    """Local training hyper-parameters (`fedcore.protocol.messages.TrainConfig` satisfies it)."""

    @property
    def local_epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def proximal_mu(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalResult:
    """One client's outcome; `client` is its position in the input sequence."""

    client: int
    update: dict[str, Array]
    num_examples: int
    train_loss: float
    steps: int = 0


def cross_entropy_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unreduced cross-entropy over the last axis: the default per-example loss.

    Written as `logsumexp - picked logit` rather than `F.cross_entropy`, which runs about
    1.7x slower under `vmap`; the value is the same.
    """
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(logits, dim=-1) - picked


def epoch_orders(
    num_examples: int, *, epochs: int, seed: int, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """The example order of each epoch for a client with this seed (see module docstring).

    `generator`, a CPU generator to re-seed and reuse, only saves creating one per client.
    """
    generator = (generator or torch.Generator()).manual_seed(seed)
    return [torch.randperm(num_examples, generator=generator) for _ in range(epochs)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainJob:
    """One cohort's local training, as every kernel and pool takes it.

    Attributes:
        model: a template module; its parameter names are the names in `global_params`.
        global_params: where every client starts.
        clients: each client's local data.
        seeds: each client's training seed (its batch order; see the module docstring).
        settings: the local hyper-parameters.
        epochs: each client's own number of epochs, at most `settings.local_epochs`
            (a straggler's partial work); None: `settings.local_epochs` for everyone.
        loss_fn: the per-example loss.
        corrections: each client's SCAFFOLD correction `c - c_i` by parameter name (None:
            plain SGD); sequential kernel only.

    Raises:
        ValueError: model, params, data, seeds, epochs or settings are inconsistent.
    """

    model: nn.Module
    global_params: Params
    clients: Sequence[LocalData]
    seeds: Sequence[int]
    settings: TrainSettings
    epochs: Sequence[int] | None = None
    loss_fn: PerExampleLoss = cross_entropy_per_example
    corrections: Sequence[Mapping[str, Array]] | None = None

    def __post_init__(self) -> None:
        names = [name for name, _ in self.model.named_parameters()]
        if list(self.global_params) != names:
            raise ValueError(f"global params {list(self.global_params)} differ from the "
                             f"model's {names}")
        if len(self.seeds) != len(self.clients):
            raise ValueError(f"{len(self.clients)} clients but {len(self.seeds)} seeds")
        if self.settings.local_epochs < 1 or self.settings.batch_size < 1:
            raise ValueError("local_epochs and batch_size must be at least 1")
        for position, (x, y) in enumerate(self.clients):
            if len(x) == 0 or len(x) != len(y):
                raise ValueError(f"client {position}: {len(x)} features for {len(y)} labels")
        if self.epochs is not None:
            if len(self.epochs) != len(self.clients):
                raise ValueError(f"{len(self.clients)} clients but {len(self.epochs)} epoch "
                                 "counts")
            if any(not 1 <= k <= self.settings.local_epochs for k in self.epochs):
                raise ValueError(f"per-client epochs must be in 1..{self.settings.local_epochs}")
        if self.corrections is not None:
            if len(self.corrections) != len(self.clients):
                raise ValueError(f"{len(self.clients)} clients but {len(self.corrections)} "
                                 "corrections")
            for c in self.corrections:
                if not set(c) <= set(names):
                    raise ValueError(f"corrections for {sorted(set(c) - set(names))}, which "
                                     "are not model parameters")

    def client_epochs(self) -> list[int]:
        """Each client's number of epochs."""
        if self.epochs is None:
            return [self.settings.local_epochs] * len(self.clients)
        return [int(k) for k in self.epochs]

    def part(self, positions: Sequence[int]) -> TrainJob:
        """The job of the clients at `positions` (their results are numbered from 0)."""
        counts = self.client_epochs()
        corrections = (None if self.corrections is None
                       else [self.corrections[p] for p in positions])
        return dataclasses.replace(
            self, clients=[self.clients[p] for p in positions],
            seeds=[int(self.seeds[p]) for p in positions], epochs=[counts[p] for p in positions],
            corrections=corrections,
        )


def train_sequential(job: TrainJob, *, device: str | torch.device = "cpu") -> Iterator[LocalResult]:
    """Train each client in turn on `job.model` (its parameters are overwritten); yield results.

    The model is moved to `device`, where each client's data is moved as it trains. Buffers (e.g.
    batch-norm statistics) are restored before every client and not reported. Training happens
    as results are consumed.
    """
    dev = torch.device(device)
    start = {n: torch.as_tensor(np.asarray(v)).to(dev) for n, v in job.global_params.items()}
    job.model.to(dev)
    corrections: list[Mapping[str, Array] | None] = (
        list(job.corrections) if job.corrections is not None else [None] * len(job.clients))
    return _train_each(job.model, start, list(zip(job.clients, corrections)), job.seeds,
                       job.client_epochs(), job.settings, job.loss_fn)


def _train_each(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    clients: Sequence[tuple[LocalData, Mapping[str, Array] | None]],
    seeds: Sequence[int],
    epochs: Sequence[int],
    settings: TrainSettings,
    loss_fn: PerExampleLoss,
) -> Iterator[LocalResult]:
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    for position, (((x, y), correction), seed, count) in enumerate(zip(clients, seeds, epochs)):
        with torch.no_grad():
            for name, tensor in model.named_buffers():
                tensor.copy_(buffers[name])
        yield _train_one(model, start, (x, y), (seed, count), settings, loss_fn, position,
                         correction)


def _train_one(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    data: LocalData,
    seed_and_epochs: tuple[int, int],
    settings: TrainSettings,
    loss_fn: PerExampleLoss,
    position: int,
    correction: Mapping[str, Array] | None = None,
) -> LocalResult:
    (x, y), (seed, epochs) = data, seed_and_epochs
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in params.items():
            tensor.copy_(start[name])
    first = next(iter(start.values()))
    features = torch.as_tensor(x, dtype=first.dtype, device=first.device)
    labels = torch.as_tensor(y, dtype=torch.int64, device=first.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=first.device)
    optimizer = SGD(learning_rate=settings.learning_rate)
    terms = {n: torch.as_tensor(np.asarray(v), dtype=start[n].dtype, device=first.device)
             for n, v in (correction or {}).items()}
    steps = 0
    for order in epoch_orders(len(labels), epochs=epochs, seed=seed):
        for batch in torch.split(order.to(first.device), settings.batch_size):
            per_example = loss_fn(model(features[batch]), labels[batch])
            loss = per_example.mean()
            if terms:  # SCAFFOLD: a linear term whose gradient is the correction
                loss = loss + sum((terms[n] * params[n]).sum() for n in terms)
            sgd_step(params, start, loss, optimizer=optimizer, mu=settings.proximal_mu)
            loss_sum += per_example.detach().sum().double()
            steps += 1
    update = {n: (t.detach() - start[n]).cpu().numpy() for n, t in params.items()}
    visited = len(labels) * epochs
    return LocalResult(
        client=position,
        update=update,
        num_examples=len(labels),
        train_loss=float(loss_sum) / visited,
        steps=steps,
    )

