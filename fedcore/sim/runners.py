"""How the in-process driver gets tasks done: vectorised or sequential torch training over a
population, or any `ClientApp` through the client's own task handler."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fedcore.client.app import ClientApp
from fedcore.client.handler import TaskHandler
from fedcore.messages import ResultHeader, Task, TaskResult
from fedcore.params import Params
from fedcore.sim.backends.sequential import (
    LocalData,
    cross_entropy_per_example,
    train_sequential,
)
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.population import Population
from fedcore.wire.tensor import EMPTY_SPEC, spec_of


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
    """Shuffle with `seed` and hold out `test_fraction` (at least one example each side)."""
    x, y = data
    order = np.random.default_rng(seed).permutation(len(y))
    cut = min(len(y) - 1, max(1, int(round(len(y) * test_fraction)))) if len(y) > 1 else 0
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
    """

    def __init__(
        self,
        model: nn.Module,
        population: Population,
        *,
        vectorised: bool = True,
        device: str = "cpu",
        test_fraction: float = 0.2,
    ) -> None:
        self.model = model
        self.population = population
        self.vectorised = vectorised
        self.device = device
        self.test_fraction = test_fraction

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
        kernel = train_vectorised if self.vectorised else train_sequential
        results: dict[str, TaskResult] = {}
        trained = kernel(
            self.model, params, data, seeds=seeds, settings=task.train, device=self.device,
            epochs=epochs,
        )
        for local in trained:
            cid = clients[local.client]
            update = {k: np.asarray(v, dtype=params[k].dtype) for k, v in local.update.items()}
            results[cid] = TaskResult(
                header=ResultHeader(
                    client_id=cid,
                    task_id=task.task_id,
                    num_examples=local.num_examples,
                    metrics={"loss": local.train_loss},
                    spec=spec_of(update),
                ),
                tensors=update,
            )
        return results

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
