"""What answers a task for each virtual client: a `ClientApp`, run by the driver through the
deployed client's own `TaskHandler` (fedcore.client.handler).

A runner only produces local training and evaluation outcomes: `AppRunner` hands over each
client's own app; `TorchRunner` trains a whole cohort at once (vectorised, sequential, in a
process pool or on Ray) and hands over `ReplayApp`s that answer with what the kernel
computed. Refusals (a spent privacy budget), the update's packaging and checks, and every
secure-aggregation step are the task handler's, as in deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedcore.client.app import ClientApp, ClientAppError, DeclineTask, EvalResult, FitResult
from fedcore.client.scaffold import VariateStore
from fedcore.protocol.messages import LocalDPConfig, Task, TrainConfig
from fedcore.protocol.params import Metrics, Params
from fedcore.protocol.scaffold import has_control, split_control
from fedcore.sim.backends.opacus_reference import train_with_opacus
from fedcore.sim.backends.private import (
    DPSettings,
    client_noise_generator,
    train_vectorised_private,
)
from fedcore.sim.backends.sequential import (
    LocalData,
    LocalResult,
    TrainJob,
    cross_entropy_per_example,
    train_sequential,
)
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.population import Population
from fedcore.sim.privacy import ClientPrivacy
from fedcore.sim.scaffold import StoredVariates, client_correction

_Outcome = TypeVar("_Outcome", FitResult, EvalResult)


class TrainingPool(Protocol):
    """Trains clients outside this process (`ProcessPool`, `RayPool`)."""

    def train(self, job: TrainJob) -> Iterator[LocalResult]:
        """One result per client (`client` is its position in `job.clients`), in any order."""
        ...


class TaskRunner(Protocol):
    """Prepares one engine task's local work for many virtual clients at once."""

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        params: Params,
        *,
        epochs: Mapping[str, int] | None = None,
    ) -> dict[str, ClientApp]:
        """The app that answers `task` for each client; a client may be missing (it failed).
        `epochs` gives the clients that train fewer epochs than the task asks (stragglers'
        partial work); the driver hands each app the task with the client's own epochs."""
        ...


class ReplayApp:
    """A virtual client's app for one task: it answers with what a backend computed for it.

    Args:
        outcome: the trained parameters, the evaluation, or the refusal (raised by `fit` or
            `evaluate`, as a deployed app raises it).
    """

    def __init__(self, outcome: FitResult | EvalResult | DeclineTask, *,
                 correction: dict[str, npt.NDArray[np.float64]] | None = None,
                 variate_store: VariateStore | None = None) -> None:
        self.outcome = outcome
        self.correction = correction
        self.variate_store = variate_store  # where the handler keeps c_i (SCAFFOLD)

    def get_parameters(self) -> Params:
        """Never asked: simulations start from the coordinator's initial parameters."""
        raise ClientAppError("a virtual client holds no initial parameters")

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        """The trained parameters (or the refusal) the backend computed."""
        return self._outcome(FitResult)

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, npt.NDArray[np.float64]]) -> FitResult:
        """SCAFFOLD: what the backend computed with this client's correction (`TorchRunner`
        reads c_i from the same per-client state the task handler then updates).

        Raises:
            ClientAppError: the handler's correction is not the one trained with (its c_i is
                kept elsewhere than the population's: build handlers with `ScaffoldHandlers`).
        """
        trained = self.correction or {}
        if set(trained) != set(correction) or not all(
                np.array_equal(trained[n], correction[n]) for n in correction):
            raise ClientAppError("the client's control variate differs from the one its local "
                                 "training used: keep c_i in Population.control_variates "
                                 "(fedcore.sim.scaffold.ScaffoldHandlers)")
        return self._outcome(FitResult)

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        """The evaluation (or the refusal) the backend computed."""
        return self._outcome(EvalResult)

    def _outcome(self, kind: type[_Outcome]) -> _Outcome:
        if isinstance(self.outcome, DeclineTask):
            raise self.outcome
        if not isinstance(self.outcome, kind):
            raise ClientAppError(f"this virtual client holds a {type(self.outcome).__name__}, "
                                 f"not a {kind.__name__}")
        return self.outcome


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
    ) -> dict[str, ClientApp]:
        """Train or evaluate `clients` from `params`; each app replays its client's outcome."""
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
    ) -> dict[str, ClientApp]:
        indices, epochs = indices_and_epochs
        seeds = [int(s) for s in self.population.train_seeds(indices, task.round)]
        data = [s.train for s in splits]
        if has_control(params):  # SCAFFOLD: each client's correction c - c_i, sequentially
            params, control = split_control(params)
            corrections = [client_correction(self.population, i, control) for i in indices]
            job = TrainJob(model=self.model, global_params=params, clients=data, seeds=seeds,
                           settings=task.train, epochs=epochs, corrections=corrections)
            return {clients[local.client]: ReplayApp(
                fitted(local, params, {"loss": local.train_loss}),
                correction=corrections[local.client],
                variate_store=StoredVariates(self.population.control_variates,
                                             indices[local.client]))
                for local in train_sequential(job, device=self.device)}
        job = TrainJob(model=self.model, global_params=params, clients=data, seeds=seeds,
                       settings=task.train, epochs=epochs)
        if task.train.local_dp is not None:
            private = PrivateTraining(self, task.train, task.train.local_dp)
            return private.run(clients, indices, job)
        if self.pool is not None:
            trained = self.pool.train(job)
        elif self.vectorised:
            trained = train_vectorised(job, device=self.device)
        else:
            trained = train_sequential(job, device=self.device)
        return {
            clients[local.client]: ReplayApp(fitted(local, params, {"loss": local.train_loss}))
            for local in trained
        }

    def _evaluate(
        self, task: Task, clients: Sequence[str], splits: list[Split], params: Params
    ) -> dict[str, ClientApp]:
        params = split_control(params)[0]  # SCAFFOLD's control variates are not the model's
        xs = np.concatenate([s.test[0] for s in splits])
        ys = np.concatenate([s.test[1] for s in splits])
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in params.items()}
        with torch.no_grad():
            logits = torch.func.functional_call(self.model, state, (torch.as_tensor(xs),))
            losses = cross_entropy_per_example(logits, torch.as_tensor(ys)).numpy()
            correct = (logits.argmax(dim=-1).numpy() == ys).astype(np.float64)
        apps: dict[str, ClientApp] = {}
        start = 0
        for cid, split in zip(clients, splits):
            n = len(split.test[1])
            part = slice(start, start + n)
            start += n
            apps[cid] = ReplayApp(
                EvalResult(loss=float(losses[part].mean()), num_examples=n,
                           metrics={"accuracy": float(correct[part].mean())})
                if n else DeclineTask("no data held out for evaluation")
            )
        return apps


def fitted(local: LocalResult, params: Params, metrics: Metrics) -> FitResult:
    """The parameters a client trained to (`params` plus its update), as its app returns them."""
    trained = {k: np.add(params[k], v, dtype=params[k].dtype) for k, v in local.update.items()}
    return FitResult(params=trained, num_examples=local.num_examples, metrics=metrics,
                     local_steps=local.steps)


class PrivateTraining:
    """One round's local DP-SGD for a `TorchRunner`: budgets, kernels by noise level, ε."""

    def __init__(self, runner: TorchRunner, settings: TrainConfig, dp: LocalDPConfig) -> None:
        self.runner, self.settings, self.dp = runner, settings, dp
        self.privacy = ClientPrivacy(runner.population.state)

    def run(self, clients: Sequence[str], indices: Sequence[int], job: TrainJob
            ) -> dict[str, ClientApp]:
        """Apps for `clients` (population `indices`): trained, or declining for good when
        over budget."""
        tasks = [
            self.privacy.plan(i, len(d[1]), dp=self.dp, batch_size=self.settings.batch_size,
                              epochs=k, local_epochs=self.settings.local_epochs)
            for i, d, k in zip(indices, job.clients, job.client_epochs())
        ]
        results: dict[str, ClientApp] = {
            clients[p]: ReplayApp(DeclineTask(t.refusal, permanent=True))
            for p, t in enumerate(tasks) if not t.allowed
        }
        by_noise: dict[float, list[int]] = {}
        for p, t in enumerate(tasks):
            if t.allowed:
                by_noise.setdefault(t.noise_multiplier, []).append(p)
        for noise, group in by_noise.items():
            for local in self._kernel(job.part(group), noise):
                p = group[local.client]
                self.privacy.record(indices[p], tasks[p])
                metrics = {"loss": local.train_loss, "epsilon": tasks[p].epsilon_after}
                results[clients[p]] = ReplayApp(fitted(local, job.global_params, metrics))
        return results

    def _kernel(self, job: TrainJob, noise: float) -> Iterator[LocalResult]:
        runner = self.runner
        dp = DPSettings(noise_multiplier=noise, max_grad_norm=self.dp.max_grad_norm)
        if runner.vectorised:
            own = ([client_noise_generator(int(s)) for s in job.seeds] if runner.opacus_noise
                   else None)
            return train_vectorised_private(job, dp=dp, device=runner.device,
                                            noise_generators=own)
        return train_with_opacus(job, dp=dp, device=runner.device)


class AppRunner:
    """Hands each client its own `ClientApp` (the driver runs it through a `TaskHandler`)."""

    def __init__(self, app_for: Callable[[str], ClientApp]) -> None:
        self._app_for = app_for

    def run(
        self,
        task: Task,
        clients: Sequence[str],
        params: Params,
        *,
        epochs: Mapping[str, int] | None = None,
    ) -> dict[str, ClientApp]:
        """Each client's app; it trains when the driver's task handler calls it."""
        return {c: self._app_for(c) for c in clients}
