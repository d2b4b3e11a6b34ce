"""An in-memory harness for the round engine: N clients, a fake clock, no I/O.

The harness plays what the gRPC driver does (authenticate, then call the engine with `now`)
and hands the engine fresh copies of tensors, as a driver's decoded payload would be.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskReply, TaskResult
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec, spec_of
from fedcore.strategy import FedAvg
from fedcore.strategy.base import Strategy


def initial_model() -> dict[str, Array]:
    return {"w": np.array([1.0, 2.0], np.float32), "b": np.array(0.5, np.float32)}


def engine_config(**overrides: Any) -> EngineConfig:
    """Defaults for tests: no evaluation, clients never time out, one round."""
    settings: dict[str, Any] = {
        "num_rounds": 1,
        "train": SelectionConfig(fraction=1.0),
        "evaluate": None,
        "client_timeout_s": 1e9,
        "round_timeout_s": 60.0,
        "eval_timeout_s": 30.0,
    }
    settings.update(overrides)
    return EngineConfig(**settings)


class Harness:
    """One engine, its clients' sessions, and a clock that moves only when told."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        strategy: Strategy | None = None,
        initial: Mapping[str, Array] | None = None,
        clients: int = 0,
    ) -> None:
        counter = itertools.count()
        self.engine = RoundEngine(
            config,
            strategy or FedAvg(),
            initial_params=initial,
            initial_from_client=initial is None,
            token_source=lambda n: next(counter).to_bytes(n, "big"),
        )
        self.now = 0.0
        self.sessions: dict[str, bytes] = {}
        self.join(*(f"c{i}" for i in range(clients)))

    # clock -------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.engine.tick(self.now)

    # client requests ---------------------------------------------------------------------
    def join(self, *client_ids: str) -> None:
        """Join clients, then let the engine see the clock (rounds start on ticks, not polls)."""
        for cid in client_ids:
            self.sessions[cid] = self.engine.join(cid, now=self.now)
        self.engine.tick(self.now)

    def poll(self, cid: str) -> TaskReply:
        self.engine.authenticate(cid, self.sessions[cid], now=self.now)
        return self.engine.poll(cid, now=self.now)

    def tasks(self) -> dict[str, Task]:
        """Poll every joined client; the ones that got a task, with it."""
        replies = {cid: self.poll(cid) for cid in sorted(self.sessions)}
        return {cid: r for cid, r in replies.items() if isinstance(r, Task)}

    def download(self, cid: str, task: Task) -> dict[str, Array]:
        self.engine.authenticate(cid, self.sessions[cid], now=self.now)
        model = self.engine.model_for(cid, task.task_id, now=self.now)
        return {k: np.array(v) for k, v in model.params.items()}

    def submit(
        self,
        cid: str,
        task: Task,
        tensors: Mapping[str, Array] | None = None,
        *,
        num_examples: int = 1,
        metrics: Mapping[str, float] | None = None,
        spec: ModelSpec | None = None,
        task_id: str | None = None,
        client_id: str | None = None,
        declined_reason: str = "",
    ) -> None:
        """Report a result; TRAIN defaults to a zero update, INITIALIZE to the test model."""
        if tensors is None:
            tensors = self.default_tensors(task)
        copies = {k: np.array(v, copy=True) for k, v in tensors.items()}
        header = ResultHeader(
            client_id=client_id or cid,
            task_id=task_id or task.task_id,
            num_examples=num_examples,
            metrics=dict(metrics or {}),
            spec=spec if spec is not None else spec_of(copies),
            declined_reason=declined_reason,
        )
        if cid in self.sessions:
            self.engine.authenticate(cid, self.sessions[cid], now=self.now)
        self.engine.submit(TaskResult(header=header, tensors=copies), now=self.now)

    def default_tensors(self, task: Task) -> dict[str, Array]:
        if task.kind is TaskKind.TRAIN:
            return self.delta(0.0)
        if task.kind is TaskKind.INITIALIZE:
            return initial_model()
        return {}

    def delta(self, fill: float) -> dict[str, Array]:
        """An update shaped like the current model, every entry `fill`."""
        params = self.engine.params
        assert params is not None
        return {k: np.full_like(v, fill) for k, v in params.items()}

    def play_round(
        self,
        updates: Mapping[str, tuple[float | Mapping[str, Array], int]],
        metrics: Mapping[str, Mapping[str, float]] | None = None,
    ) -> dict[str, Task]:
        """Poll everyone; each selected client in `updates` submits (delta, num_examples)."""
        tasks = self.tasks()
        for cid, task in tasks.items():
            if cid in updates:
                value, n = updates[cid]
                tensors = self.delta(value) if isinstance(value, float | int) else value
                self.submit(cid, task, tensors, num_examples=n, metrics=(metrics or {}).get(cid))
        return tasks

    # observation -------------------------------------------------------------------------
    def params_bytes(self) -> dict[str, bytes] | None:
        params = self.engine.params
        return None if params is None else {k: v.tobytes() for k, v in params.items()}

    def snapshot(self) -> tuple[Any, ...]:
        """Everything observable about the engine, for before/after comparisons."""
        e = self.engine
        return (
            e.phase,
            e.round_number,
            self.params_bytes(),
            e.records,
            sorted(e.available_clients(self.now)),
        )


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    """`make_harness(clients=3, initial=..., strategy=..., **engine_config_overrides)`."""

    def make(
        *,
        clients: int = 3,
        initial: Mapping[str, Array] | None | str = "default",
        strategy: Strategy | None = None,
        **overrides: Any,
    ) -> Harness:
        params = initial_model() if initial == "default" else initial
        return Harness(
            engine_config(**overrides), strategy=strategy, initial=params, clients=clients
        )

    return make


@pytest.fixture
def model() -> dict[str, Array]:
    """The harness's default initial model (a fresh copy)."""
    return initial_model()
