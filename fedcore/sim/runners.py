"""How the in-process driver gets tasks done: vectorised or sequential torch training over a
population, or any `ClientApp` through the client's own task handler."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedcore.client.app import ClientApp
from fedcore.client.handler import TaskHandler
from fedcore.messages import LocalDPConfig, ResultHeader, Task, TaskResult, TrainConfig
from fedcore.params import Params
from fedcore.sim.backends.opacus_reference import train_with_opacus
from fedcore.sim.backends.private import (
    DPSettings,
    client_noise_generator,
    train_vectorised_private,
)
from fedcore.sim.backends.sequential import (
    LocalData,
    LocalResult,
    cross_entropy_per_example,
    train_sequential,
)
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.population import Population
from fedcore.sim.privacy import ClientPrivacy
from fedcore.wire.tensor import EMPTY_SPEC, spec_of


class TrainingPool(Protocol):
    """Trains clients outside this process (`ProcessPool`, `RayPool`)."""

    def train(
        self,
        model: nn.Module,
        global_params: Params,
        clients: Sequence[LocalData],
        *,
        seeds: Sequence[int],
        settings: TrainConfig,
        epochs: Sequence[int] | None = None,
    ) -> Iterator[LocalResult]:
        """One result per client (`client` is its position in `clients`), in any order."""
        ...


class TaskRunner(Protocol):
    """Runs one engine task for many virtual clients at once."""

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        params: Params,
        *,
        epochs: Mapping[str, int] | None = None,
    ) -> dict[str, TaskResult]:
        """Results by client id; a client may be missing (it failed). `epochs` gives the
        clients that train fewer epochs than the task asks (stragglers' partial work)."""
        ...


@dataclass(frozen=True, slots=True)
class Split:
    """A client's local data, split into a training and a held-out part."""

    train: LocalData
    test: LocalData


def split_local(data: LocalData, *, test_fraction: float, seed: int) -> Split:
    """Shuffle with `seed` and hold out `test_fraction` (at least one example each side);
    0 holds out nothing (all data trains; federated evaluation then has no data)."""
    x, y = data
    if test_fraction == 0:
        return Split(train=(x, y), test=(x[:0], y[:0]))
    order = np.random.default_rng(seed).permutation(len(y))
    cut = min(len(y) - 1, max(1, round(len(y) * test_fraction))) if len(y) > 1 else 0
    test, train = order[:cut], order[cut:]
    return Split(train=(x[train], y[train]), test=(x[test], y[test]))


class TorchRunner:
    """Trains a population's clients with the vectorised (torch.func) or sequential kernel.

    Args:
        model: a template module (its state-dict names are the wire names).
        population: who the clients are and their data.
        vectorised: vmap over clients (needs a buffer-free model) or one client at a time.
        device: where training runs ("cpu", "cuda").
        test_fraction: share of each client's data held out for federated evaluation.
        pool: train in worker processes or Ray tasks instead (each worker runs the
            `vectorised` or sequential kernel as the pool was built); local DP stays here.
        opacus_noise: under local DP, draw each client's noise from its own generator as the
            sequential backend (Opacus) does, so both give the same models; slower than one
            shared generator per chunk, which draws the same distribution.
    """

    def __init__(
        self,
        model: nn.Module,
        population: Population,
        *,
        vectorised: bool = True,
        device: str = "cpu",
        test_fraction: float = 0.2,
        opacus_noise: bool = False,
        pool: TrainingPool | None = None,
    ) -> None:
        self.model = model
        self.population = population
        self.vectorised = vectorised
        self.device = device
        self.test_fraction = test_fraction
        self.opacus_noise = opacus_noise
        self.pool = pool

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        params: Params,
        *,
        epochs: Mapping[str, int] | None = None,
    ) -> dict[str, TaskResult]:
        """Train or evaluate `clients` from `params`."""
        indices = [self.population.index_of(c) for c in clients]
        splits = [self._split(i) for i in indices]
        params = {k: np.array(v) for k, v in params.items()}  # writable copies for torch
        if task.kind.value == "train":
            counts = [(epochs or {}).get(c, task.train.local_epochs) for c in clients]
            return self._train(task, clients, (indices, counts), splits, params)
        return self._evaluate(task, clients, splits, params)

    def _split(self, index: int) -> Split:
        return split_local(
            self.population.load(index),
            test_fraction=self.test_fraction,
            seed=self.population.client(index).seed,
        )

    def _train(
        self,
        task: Task,
        clients: Sequence[str],
        indices_and_epochs: tuple[list[int], list[int]],
        splits: list[Split],
        params: Params,
    ) -> dict[str, TaskResult]:
        indices, epochs = indices_and_epochs
        seeds = [int(s) for s in self.population.train_seeds(indices, task.round)]
        data = [s.train for s in splits]
        if task.train.local_dp is not None:
            private = PrivateTraining(self, task.train, task.train.local_dp)
            return private.run(task, clients, (indices, epochs, seeds), data, params)
        if self.pool is not None:
            trained = self.pool.train(
                self.model, params, data, seeds=seeds, settings=task.train, epochs=epochs
            )
        else:
            kernel = train_vectorised if self.vectorised else train_sequential
            trained = kernel(
                self.model, params, data, seeds=seeds, settings=task.train, device=self.device,
                epochs=epochs,
            )
        return {
            clients[local.client]: train_result(
                task, clients[local.client], local, params, {"loss": local.train_loss}
            )
            for local in trained
        }

    def _evaluate(
        self, task: Task, clients: Sequence[str], splits: list[Split], params: Params
    ) -> dict[str, TaskResult]:
        xs = np.concatenate([s.test[0] for s in splits])
        ys = np.concatenate([s.test[1] for s in splits])
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in params.items()}
        with torch.no_grad():
            logits = torch.func.functional_call(self.model, state, (torch.as_tensor(xs),))
            losses = cross_entropy_per_example(logits, torch.as_tensor(ys)).numpy()
            correct = (logits.argmax(dim=-1).numpy() == ys).astype(np.float64)
        results: dict[str, TaskResult] = {}
        start = 0
        for cid, split in zip(clients, splits):
            n = len(split.test[1])
            part = slice(start, start + n)
            start += n
            results[cid] = TaskResult(
                header=ResultHeader(
                    client_id=cid,
                    task_id=task.task_id,
                    num_examples=n,
                    spec=EMPTY_SPEC,
                    metrics={
                        "loss": float(losses[part].mean()),
                        "accuracy": float(correct[part].mean()),
                    },
                )
            )
        return results


def train_result(
    task: Task, cid: str, local: LocalResult, params: Params, metrics: dict[str, float]
) -> TaskResult:
    """A TRAIN result as the client's task handler would send it."""
    update = {k: np.asarray(v, dtype=params[k].dtype) for k, v in local.update.items()}
    header = ResultHeader(
        client_id=cid, task_id=task.task_id, num_examples=local.num_examples,
        metrics=metrics, spec=spec_of(update),
    )
    return TaskResult(header=header, tensors=update)


def declined_result(task: Task, cid: str, reason: str) -> TaskResult:
    """A permanent refusal, as a deployed client whose privacy budget is spent sends."""
    return TaskResult(header=ResultHeader(
        client_id=cid, task_id=task.task_id, num_examples=0, declined_reason=reason,
        permanent=True,
    ))


class PrivateTraining:
    """One round's local DP-SGD for a `TorchRunner`: budgets, kernels by noise level, ε."""

    def __init__(self, runner: TorchRunner, settings: TrainConfig, dp: LocalDPConfig) -> None:
        self.runner, self.settings, self.dp = runner, settings, dp
        self.privacy = ClientPrivacy(runner.population.state)

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        plan: tuple[list[int], list[int], list[int]],
        data: list[LocalData],
        params: Params,
    ) -> dict[str, TaskResult]:
        """Results for `clients`: trained, or declined for good when over budget."""
        indices, epochs, seeds = plan
        tasks = [
            self.privacy.plan(i, len(d[1]), dp=self.dp, batch_size=self.settings.batch_size,
                              epochs=k, local_epochs=self.settings.local_epochs)
            for i, d, k in zip(indices, data, epochs)
        ]
        results = {
            clients[p]: declined_result(task, clients[p], "privacy budget spent")
            for p, t in enumerate(tasks) if not t.allowed
        }
        by_noise: dict[float, list[int]] = {}
        for p, t in enumerate(tasks):
            if t.allowed:
                by_noise.setdefault(t.noise_multiplier, []).append(p)
        for noise, group in by_noise.items():
            trained = self._kernel(
                params, [data[p] for p in group], [seeds[p] for p in group],
                [epochs[p] for p in group], noise,
            )
            for local in trained:
                p = group[local.client]
                self.privacy.record(indices[p], tasks[p])
                metrics = {"loss": local.train_loss, "epsilon": tasks[p].epsilon_after}
                results[clients[p]] = train_result(task, clients[p], local, params, metrics)
        return results

    def _kernel(
        self, params: Params, data: list[LocalData], seeds: list[int], epochs: list[int],
        noise: float,
    ) -> Iterator[LocalResult]:
        runner = self.runner
        dp = DPSettings(noise_multiplier=noise, max_grad_norm=self.dp.max_grad_norm)
        if runner.vectorised:
            own = [client_noise_generator(s) for s in seeds] if runner.opacus_noise else None
            return train_vectorised_private(
                runner.model, params, data, seeds=seeds, settings=self.settings, dp=dp,
                device=runner.device, epochs=epochs, noise_generators=own,
            )
        return train_with_opacus(
            runner.model, params, data, seeds=seeds, settings=self.settings, dp=dp,
            device=runner.device, epochs=epochs,
        )


class AppRunner:
    """Runs each client's `ClientApp` through the client's own `TaskHandler`, one by one."""

    def __init__(self, app_for: Callable[[str], ClientApp]) -> None:
        self._app_for = app_for

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        params: Params,
        *,
        epochs: Mapping[str, int] | None = None,
    ) -> dict[str, TaskResult]:
        """Each client's result, exactly as a deployed client would compute it; a straggler
        gets the task with its own `local_epochs`."""
        epochs = epochs or {}
        return {
            c: TaskHandler(self._app_for(c), c).handle(_with_epochs(task, epochs.get(c)), params)
            for c in clients
        }


def _with_epochs(task: Task, epochs: int | None) -> Task:
    if epochs is None:
        return task
    return dataclasses.replace(task, train=dataclasses.replace(task.train, local_epochs=epochs))
