"""Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022), as an I/O-free state machine.

There are no rounds. The coordinator keeps up to `concurrency` training tasks out at once and
hands a new one to any client that asks while a slot is free; each task carries the model
version v it started from. Every result is folded, as it arrives, into a buffer with the
staleness weight

    s(τ) = (1 + τ)^(-staleness_exponent)     (1/sqrt(1 + τ) by default),

τ = (the server's version now) - v. When the buffer holds `buffer_size` = K results, the
server steps on their staleness-weighted mean, Δ = Σ_k s(τ_k) Δ_k / K (the paper's Algorithm 1
divides by K, not by Σ s), through the strategy's `apply` (FedAvg's `x + η_g Δ`, or a server
optimizer's step), the version becomes v + 1, and the buffer empties. Results staler than
`max_staleness` (when set) are refused and free their slot; so do declines; a task not
answered by its deadline (`task_timeout_s`) expires and frees its slot.

Every `eval_every` versions (and the last) the version is evaluated by the next clients that
ask (`fedcore.engine.buffered_eval`); the run ends after that last evaluation.

Like the round engine it takes messages and returns messages (`Task`, `Wait`, `Done`,
`TaskResult`), and time is passed in (`now`), so the simulator (`fedcore.sim.buffered`) drives it
with a simulated clock and the gRPC coordinator with the wall clock
(`fedcore.engine.buffered_coordinator`). Memory: the buffer is one exact running sum (O(model)), plus one copy of
each model version some outstanding task started from (at most min(concurrency,
max_staleness + 1) versions; they are shared, not copied, per task).

`snapshot()` / `BufferedEngine.restore` carry what must survive a coordinator restart (model,
version, the strategy's state, counters, records); outstanding tasks and a partly filled buffer
are not kept: after a restart their results are refused as not outstanding, and the clients ask
for a new task. With secure aggregation each buffer is one secure-aggregation group:
`fedcore.engine.buffered_secure`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from fedcore.aggregate.base import AggregateResult
from fedcore.aggregate.mean import WeightedMean
from fedcore.engine.buffered_eval import Evaluations
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    Done,
    ResultHeader,
    Task,
    TaskKind,
    TaskReply,
    TaskResult,
    Wait,
)
from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, check_matches, spec_of
from fedcore.protocol.update import update_values
from fedcore.strategy.base import StatefulStrategy, Strategy
from fedcore.wire.tensor import check_finite


def staleness_weight(staleness: int, exponent: float = 0.5) -> float:
    """s(τ) = (1 + τ)^(-exponent): 1 for a fresh result, 1/sqrt(1 + τ) by default."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    return float((1.0 + staleness) ** -exponent)


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferedConfig:
    """A FedBuff run.

    Attributes:
        buffer_size: K, results per server step.
        concurrency: how many training tasks may be out at once.
        num_updates: server steps (model versions) after which the run is done.
        task_timeout_s: a task not answered within this many seconds expires.
        max_staleness: refuse results more than this many versions old (0: accept any).
        staleness_exponent: a in s(τ) = (1 + τ)^-a (0.5 in the paper; 0 weighs all equally).
        retry_after_s: what `Wait` tells a client while every slot is taken.
        eval_every: evaluate every this many versions, and the last (0: no evaluation); see
            `fedcore.engine.buffered_eval`.
        eval_clients: results each evaluation gathers (evaluation tasks take no training slot).
    """

    buffer_size: int = 10
    concurrency: int = 20
    num_updates: int = 10
    task_timeout_s: float = 600.0
    max_staleness: int = 0
    staleness_exponent: float = 0.5
    retry_after_s: float = 1.0
    eval_every: int = 0
    eval_clients: int = 10

    def __post_init__(self) -> None:
        for name in ("buffer_size", "concurrency", "num_updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_clients"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.concurrency < self.buffer_size:
            raise ValueError(f"concurrency ({self.concurrency}) must be >= buffer_size "
                             f"({self.buffer_size}), or the buffer could never fill")
        if not (math.isfinite(self.task_timeout_s) and self.task_timeout_s > 0):
            raise ValueError(f"task_timeout_s must be > 0, got {self.task_timeout_s}")
        if self.max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0, got {self.max_staleness}")
        if not (math.isfinite(self.staleness_exponent) and self.staleness_exponent >= 0):
            raise ValueError(f"staleness_exponent must be >= 0, got {self.staleness_exponent}")
        if not self.retry_after_s > 0:
            raise ValueError(f"retry_after_s must be > 0, got {self.retry_after_s}")


class Outcome(enum.Enum):
    """What became of a submitted result."""

    BUFFERED = "buffered"  # folded; the buffer is not full yet
    APPLIED = "applied"  # folded, and it filled the buffer: the model moved to a new version
    STALE = "stale"  # older than max_staleness: refused, its slot freed
    DECLINED = "declined"  # the client declined the task: its slot freed
    AFTER_END = "after_end"  # the run was done before it arrived: dropped
    FAILED = "failed"  # a secure buffer's protocol aborted: nothing applied
    EVALUATED = "evaluated"  # an evaluation result, folded into its version's evaluation


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferRecord:
    """One server step: the version it produced, when, the staleness of its results and,
    once that version was evaluated, the mean of `eval_clients` clients' evaluation metrics."""

    version: int
    at_s: float
    staleness: tuple[int, ...]
    measurements: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)
    eval_clients: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferedSnapshot:
    """What a buffered run keeps across a restart, as plain data (see `fedcore.engine.checkpoint`).

    Args:
        version: server steps taken.
        params: the global model at `version`.
        records: one per server step so far.
        strategy_state: a stateful strategy's tensors (e.g. server-optimizer moments).
        tasks_issued: training tasks handed out so far (task ids go on from it).
        stale_refused, expired, declined: the engine's counters.
    """

    version: int
    params: dict[str, Array]
    records: tuple[BufferRecord, ...] = ()
    strategy_state: dict[str, Array] = field(default_factory=dict)
    tasks_issued: int = 0
    stale_refused: int = 0
    expired: int = 0
    declined: int = 0

    def __post_init__(self) -> None:
        counts = (self.version, self.tasks_issued, self.stale_refused, self.expired, self.declined)
        if min(counts) < 0:
            raise ValueError(f"a buffered snapshot's counters must be >= 0, got {counts}")
        if not self.params:
            raise ValueError("a snapshot needs the global model")
        if len(self.records) != self.version:
            raise ValueError(f"a snapshot at version {self.version} needs one record per "
                             f"server step, got {len(self.records)}")


@dataclass(frozen=True, slots=True)
class _Out:
    client_id: str
    version: int
    deadline: float
    kind: TaskKind = TaskKind.TRAIN


class BufferedEngine:
    """FedBuff's coordinator logic without I/O.

    Args:
        config: buffer size, concurrency, length of the run, staleness rule.
        strategy: supplies each task's `train_config` (by version) and the server step
            (`apply`) on the buffer's staleness-weighted mean.
        initial_params: version 0 of the model.
    """

    def __init__(self, config: BufferedConfig, strategy: Strategy, initial_params: Params
                 ) -> None:
        if not initial_params:
            raise ValueError("a buffered run needs initial parameters")
        self.config = config
        self.strategy = strategy
        self.params: dict[str, Array] = {k: np.array(v) for k, v in initial_params.items()}
        self.spec: ModelSpec = spec_of(self.params)
        self.version = 0
        self.records: list[BufferRecord] = []
        self.stale_refused = 0
        self.expired = 0
        self.declined = 0
        self._models: dict[int, dict[str, Array]] = {0: self.params}
        self._out: dict[str, _Out] = {}
        self._issued = 0
        self._buffer = WeightedMean()
        self._staleness: list[int] = []
        self._evals = Evaluations(config.eval_every, config.eval_clients, config.task_timeout_s)
        self.available: int | None = None  # clients connected, as the driver last said

    @classmethod
    def restore(cls, config: BufferedConfig, strategy: Strategy, snapshot: BufferedSnapshot,
                **engine_args: Any) -> Self:
        """An engine that goes on from `snapshot` with no task out and an empty buffer (a
        stateful `strategy` takes back its state); `engine_args` go to the constructor (a
        `SecureBufferedEngine`'s `secure`).

        Raises:
            ValueError: the snapshot is past `config.num_updates`, or the strategy refuses its
                state.
        """
        if snapshot.version > config.num_updates:
            raise ValueError(f"the snapshot is at version {snapshot.version}, past num_updates "
                             f"({config.num_updates}): raise num_updates to go on")
        engine = cls(config, strategy, snapshot.params, **engine_args)
        if isinstance(strategy, StatefulStrategy):
            strategy.load_state_arrays(snapshot.strategy_state)
        elif snapshot.strategy_state:
            raise ValueError("the snapshot holds a strategy state this run's strategy has not: "
                             "resume with the strategy that wrote it")
        engine.version = snapshot.version
        engine._models = {engine.version: engine.params}
        engine.records = list(snapshot.records)
        engine._issued = snapshot.tasks_issued
        engine.stale_refused = snapshot.stale_refused
        engine.expired = snapshot.expired
        engine.declined = snapshot.declined
        return engine

    def snapshot(self) -> BufferedSnapshot:
        """What `restore` needs to go on from the current version (outstanding tasks and the
        partly filled buffer are left out)."""
        state = self.strategy.state_arrays() if isinstance(self.strategy, StatefulStrategy) else {}
        return BufferedSnapshot(
            version=self.version, params={k: np.array(v) for k, v in self.params.items()},
            records=tuple(self.records),
            strategy_state={k: np.array(v) for k, v in state.items()},
            tasks_issued=self._issued, stale_refused=self.stale_refused, expired=self.expired,
            declined=self.declined)

    # ----------------------------------------------------------------- queries
    @property
    def done(self) -> bool:
        """Whether `num_updates` server steps were taken and the last one's evaluation closed."""
        return self.trained and not self._evals.pending

    @property
    def trained(self) -> bool:
        """Whether `num_updates` server steps were taken."""
        return self.version >= self.config.num_updates

    @property
    def outstanding(self) -> int:
        """Training tasks handed out and not yet answered or expired (evaluation tasks take
        no training slot)."""
        return sum(1 for o in self._out.values() if o.kind is TaskKind.TRAIN)

    @property
    def wants_evaluators(self) -> int:
        """Evaluation tasks still to hand out to clients that ask."""
        return self._evals.wanted()

    def note_available(self, clients: int) -> None:
        """How many clients are connected (the gRPC coordinator's registry, a simulation's
        population): an evaluation never waits for more."""
        self.available = clients

    def settled_records(self) -> list[BufferRecord]:
        """The server steps whose evaluation, if any, has closed (in order: a step after one
        still being evaluated waits for it)."""
        pending = self._evals.pending
        return self.records[:min(pending) - 1] if pending else list(self.records)

    @property
    def buffered(self) -> int:
        """Results folded into the current buffer."""
        return len(self._staleness)

    def clients_out(self) -> set[str]:
        """Clients with a task out."""
        return {o.client_id for o in self._out.values()}

    def versions_held(self) -> set[int]:
        """Model versions kept: the current one and those outstanding tasks started from."""
        return set(self._models)

    def is_out(self, task_id: str) -> bool:
        """Whether task `task_id` is outstanding (handed out, not answered, not expired)."""
        return task_id in self._out

    def next_deadline(self) -> float | None:
        """The earliest deadline of an outstanding task or open evaluation (None: none)."""
        deadlines = [o.deadline for o in self._out.values()]
        evaluation = self._evals.next_deadline()
        return min(deadlines + ([] if evaluation is None else [evaluation]), default=None)

    def task_of(self, task_id: str) -> tuple[str, int] | None:
        """(client id, version it started from) of outstanding task `task_id`, else None."""
        out = self._out.get(task_id)
        return None if out is None else (out.client_id, out.version)

    @property
    def activity(self) -> tuple[object, ...]:
        """Changes whenever a waiting client may have new work: an evaluation opened or
        closed (a training slot freed is heard of at the next poll)."""
        return (tuple(sorted(self._evals.pending)),)

    def version_of(self, client_id: str, task_id: str) -> int:
        """The version `client_id`'s outstanding task `task_id` trains from.

        Raises:
            EngineError: LATE (no such task is out: answered, expired, or the run ended) or
                NOT_ASSIGNED (another client's task).
        """
        out = self._out.get(task_id)
        if out is None:
            raise EngineError(Reason.LATE, f"task {task_id} is no longer open (answered, "
                              "expired, or the run ended): ask for a new task")
        if out.client_id != client_id:
            raise EngineError(Reason.NOT_ASSIGNED, f"task {task_id} is not {client_id!r}'s")
        return out.version

    def expected_spec(self, header: ResultHeader) -> ModelSpec:
        """The payload layout the result `header` announces must have (none for a decline or
        an evaluation).

        Raises:
            EngineError: as `version_of`.
        """
        self.version_of(header.client_id, header.task_id)
        evaluation = self._out[header.task_id].kind is TaskKind.EVALUATE
        return EMPTY_SPEC if header.declined_reason or evaluation else self.spec

    def model_for(self, task_id: str) -> Params:
        """The model version outstanding task `task_id` trains from (read-only use).

        Raises:
            EngineError: NOT_ASSIGNED, no such task is out.
        """
        out = self._out.get(task_id)
        if out is None:
            raise EngineError(Reason.NOT_ASSIGNED, f"task {task_id} is not outstanding")
        return self._models[out.version]

    # ----------------------------------------------------------------- messages
    def poll(self, client_id: str, *, now: float) -> TaskReply:
        """An evaluation task while an evaluation wants one, else a training task on the
        current version while a slot is free; a client with a task out gets that task again
        (one per client at a time); `Wait` while every slot is taken; `Done` after the last
        update and its evaluation."""
        self.tick(now)
        if self.done:
            return Done(reason=f"the buffered run finished after {self.version} updates")
        reply = (self._reply_in_progress(client_id, now) or self._own_task(client_id, now)
                 or self._evaluation_task(client_id, now))
        if reply is not None:
            return reply
        if self.trained:
            return Wait(retry_after_s=self.config.retry_after_s,
                        reason="the last version is being evaluated")
        if self.outstanding >= self.config.concurrency:
            return Wait(retry_after_s=self.config.retry_after_s, reason="every slot is taken")
        return self._start_training(client_id, now)

    def _reply_in_progress(self, client_id: str, now: float) -> TaskReply | None:
        """What a client already engaged in training work gets (None: nothing; plain
        buffers have none beyond its own task, `_own_task`)."""
        return None

    def _start_training(self, client_id: str, now: float) -> TaskReply:
        """A slot is free: `client_id` trains on the current version."""
        return self._hand(client_id, self.version, TaskKind.TRAIN, now)

    def _own_task(self, client_id: str, now: float) -> Task | None:
        """The task `client_id` has out, again (None when it has none)."""
        mine = next((t for t, o in self._out.items() if o.client_id == client_id), None)
        return None if mine is None else self._task(mine, now)

    def _evaluation_task(self, client_id: str, now: float) -> Task | None:
        """A new evaluation task for `client_id` while an evaluation wants one."""
        version = self._evals.take(client_id)
        return None if version is None else self._hand(client_id, version, TaskKind.EVALUATE, now)

    def _hand(self, client_id: str, version: int, kind: TaskKind, now: float) -> Task:
        self._issued += 1
        task_id = f"{'buf' if kind is TaskKind.TRAIN else 'eval'}-{self._issued}"
        self._out[task_id] = _Out(client_id, version, now + self.config.task_timeout_s, kind)
        return self._task(task_id, now)

    def _task(self, task_id: str, now: float) -> Task:
        out = self._out[task_id]
        if out.kind is TaskKind.EVALUATE:
            return Task(round=out.version, task_id=task_id, kind=TaskKind.EVALUATE,
                        time_left_s=max(0.0, out.deadline - now), model_spec=self.spec)
        return Task(round=out.version + 1, task_id=task_id, kind=TaskKind.TRAIN,
                    train=self.strategy.train_config(out.version + 1),
                    time_left_s=max(0.0, out.deadline - now), model_spec=self.spec)

    def release(self, client_id: str) -> None:
        """Drop `client_id`'s outstanding task, if any (it left): its slot becomes free."""
        for task_id in [t for t, o in self._out.items() if o.client_id == client_id]:
            self._drop(task_id)

    def submit(self, result: TaskResult, *, now: float) -> Outcome:
        """Fold a result (the client's update from the version its task started from).

        Raises:
            EngineError: NOT_ASSIGNED (no such task out, or another client's) or INVALID
                (tensors that do not match the model, non-finite values, no examples); the
                engine's state is unchanged.
        """
        self.tick(now)
        header = result.header
        out = self._out.get(header.task_id)
        if out is None:
            if self.trained:
                return Outcome.AFTER_END
            raise EngineError(Reason.NOT_ASSIGNED, f"task {header.task_id} is not outstanding "
                              "(expired, answered, or never handed out)")
        if out.client_id != header.client_id:
            raise EngineError(Reason.NOT_ASSIGNED,
                              f"task {header.task_id} was handed to another client")
        if header.declined_reason:
            self._drop(header.task_id)
            self.declined += 1
            return Outcome.DECLINED
        if out.kind is TaskKind.EVALUATE:
            return self._evaluated(result, out, now)
        try:
            check_matches(spec_of(result.tensors), self.spec)
            check_finite(result.tensors)
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result of {header.task_id}: {err}") from err
        if header.num_examples < 1:
            raise EngineError(Reason.INVALID, "a training result needs num_examples >= 1")
        staleness = self.version - out.version
        self._finish(header.task_id)
        if self.config.max_staleness and staleness > self.config.max_staleness:
            self.stale_refused += 1
            return Outcome.STALE
        weight = staleness_weight(staleness, self.config.staleness_exponent)
        self._buffer.add({k: update_values(v) for k, v in result.tensors.items()}, weight)
        self._staleness.append(staleness)
        if len(self._staleness) < self.config.buffer_size:
            return Outcome.BUFFERED
        self._step(now)
        return Outcome.APPLIED

    def tick(self, now: float) -> None:
        """Expire the tasks whose deadline passed (their slots become free) and close the
        evaluations that are complete or past their deadline."""
        for task_id in [t for t, o in self._out.items() if o.deadline <= now]:
            self._drop(task_id)
            self.expired += 1
        self._close_evaluations(now)

    # ----------------------------------------------------------------- evaluation
    def _evaluated(self, result: TaskResult, out: _Out, now: float) -> Outcome:
        header = result.header
        if result.tensors:
            raise EngineError(Reason.INVALID, f"{header.task_id} is an evaluation: its result "
                              "carries metrics, no tensors")
        if header.num_examples < 1:
            raise EngineError(Reason.INVALID, "an evaluation result needs num_examples >= 1")
        self._finish(header.task_id)
        self._evals.fold(out.version, header.metrics, header.num_examples)
        self._close_evaluations(now)
        return Outcome.EVALUATED

    def _close_evaluations(self, now: float) -> None:
        for closed in self._evals.close_due(now):
            index = closed.version - 1  # records[i] is version i + 1's step
            self.records[index] = dataclasses.replace(
                self.records[index], evaluation=closed.metrics, eval_clients=closed.clients)

    # ----------------------------------------------------------------- internals
    def _step(self, now: float) -> None:
        mean = self._buffer.result()  # Σ s_k Δ_k / Σ s_k
        scale = mean.total_weight / self.config.buffer_size
        update: dict[str, Array] = {
            k: np.asarray(v, np.float64) * scale for k, v in mean.update.items()}
        staleness = tuple(self._staleness)
        self._buffer, self._staleness = WeightedMean(), []
        self._advance(update, staleness, now, total_weight=mean.total_weight,
                      measurements={"staleness_weight": float(mean.total_weight)})

    def _advance(self, update: dict[str, Array], staleness: tuple[int, ...], now: float, *,
                 total_weight: float, measurements: dict[str, float]) -> None:
        """One server step on `update` (already scaled as Algorithm 1 says): the new version,
        its record, and the models no outstanding task needs any more released."""
        self.params = self.strategy.apply(self.params, AggregateResult(
            update=update, count=len(staleness), total_weight=total_weight))
        self.version += 1
        self._models[self.version] = self.params
        self.records.append(BufferRecord(
            version=self.version, at_s=now, staleness=staleness,
            measurements={"mean_staleness": float(np.mean(staleness)), **measurements}))
        if self._evals.due(self.version, self.config.num_updates):
            self._evals.open(self.version, now, self.available)
        if self.trained:  # training still out can no longer count
            self._drop_outstanding()
        self._release_models()

    def _drop_outstanding(self) -> None:
        """Forget every outstanding training task (the last step was taken; evaluations of
        it go on)."""
        self._out = {t: o for t, o in self._out.items() if o.kind is TaskKind.EVALUATE}

    def _versions_in_use(self) -> set[int]:
        """Model versions outstanding work started from."""
        return {o.version for o in self._out.values()}

    def _finish(self, task_id: str) -> None:
        del self._out[task_id]
        self._release_models()

    def _drop(self, task_id: str) -> None:
        """A task that will not be answered (declined, expired, its client left): an
        evaluation's place goes to the next client that asks."""
        out = self._out[task_id]
        if out.kind is TaskKind.EVALUATE:
            self._evals.give_back(out.version)
        self._finish(task_id)

    def _release_models(self) -> None:
        needed = self._versions_in_use() | {self.version}
        for version in [v for v in self._models if v not in needed]:
            del self._models[version]
