"""The coordinator's round engine, as a state machine without I/O.

Drivers (the gRPC service, the in-process simulator) call its methods with the current time
and move bytes; the engine decides who trains, when a round closes, and what the next model is.
Queries (`poll`, `model_for`, `check_result`, the properties) change nothing; events (`join`,
`submit`, `leave`) and `tick(now)`, which drivers call to let time pass, move the engine along
`TRANSITIONS`. Every refused call raises `EngineError` and leaves the engine unchanged. What an
open task's clients send goes to its `fedcore.engine.collect.Collector`: the plain streaming
one or secure aggregation, through the same calls.
"""

from __future__ import annotations

import collections
import enum
import random
import secrets
from collections.abc import Callable

from fedcore.aggregate.base import Aggregator
from fedcore.dp.distributed_accountant import DistributedAccountant
from fedcore.engine.collect import Collector, PlainCollector, RoundFailed
from fedcore.engine.config import EngineConfig, SelectionConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.initial import InitBackoff, check_initial_model
from fedcore.engine.model import RoundModel
from fedcore.engine.records import RecordDraft, RoundRecord, RoundStatus
from fedcore.engine.registry import ClientRegistry, Registry
from fedcore.engine.secure_round import SecureRound
from fedcore.engine.selection import round_rng
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.engine.task_round import (
    LEFT,
    Finished,
    Initializing,
    RoundOpen,
    TaskRound,
    Waiting,
)
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    PROTOCOL_VERSION,
    Done,
    ResultHeader,
    Task,
    TaskKind,
    TaskReply,
    TaskResult,
    TrainConfig,
    Wait,
)
from fedcore.protocol.metric_keys import Metric
from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, check_matches, spec_of
from fedcore.strategy.base import SampledStrategy, Sampling, StatefulStrategy, Strategy
from fedcore.wire.tensor import check_finite


class Phase(enum.Enum):
    """Where the run stands."""

    WAITING = "waiting"
    INITIALIZING = "initializing"
    TRAINING = "training"
    EVALUATING = "evaluating"
    DONE = "done"


# Which phase may follow which (h11's transitions as data); `_enter` refuses any other move.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.WAITING: frozenset({Phase.INITIALIZING, Phase.TRAINING}),
    Phase.INITIALIZING: frozenset({Phase.WAITING}),
    Phase.TRAINING: frozenset({Phase.EVALUATING, Phase.WAITING, Phase.DONE}),
    Phase.EVALUATING: frozenset({Phase.WAITING, Phase.DONE}),
    Phase.DONE: frozenset(),
}

EngineState = Waiting | Initializing | RoundOpen | Finished
"""The engine holds exactly one of these; its phase is derived from it, never stored beside it."""


def phase_of(state: EngineState) -> Phase:
    """The phase a state object stands for."""
    match state:
        case Waiting():
            return Phase.WAITING
        case Initializing():
            return Phase.INITIALIZING
        case RoundOpen(task=task):
            return Phase.TRAINING if task.kind is TaskKind.TRAIN else Phase.EVALUATING
        case Finished():
            return Phase.DONE


class RoundEngine:
    """Runs `config.num_rounds` rounds of train (+ evaluate) over the clients that join.

    The first global model is the operator's `initial_params`; only with `initial_from_client`
    (the operator's opt-in) is one joined client asked for it, and a client that declines or
    fails that task is not asked again before a backoff (`config.retry_after_s`, doubling up to
    `fedcore.engine.initial.INIT_BACKOFF_MAX_S`). `model_spec` pins the model's layout: initial
    parameters of any other layout are refused.

    Raises:
        ValueError: neither or both of `initial_params` and `initial_from_client`, or
            `initial_params` that do not match `model_spec`.
    """

    def __init__(
        self,
        config: EngineConfig,
        strategy: Strategy,
        *,
        initial_params: Params | None = None,
        initial_from_client: bool = False,
        model_spec: ModelSpec | None = None,
        token_source: Callable[[int], bytes] | None = None,
        registry: ClientRegistry | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        check_initial_model(initial_params, initial_from_client, model_spec)
        self._model_spec = model_spec
        self._init_backoff = InitBackoff(config.retry_after_s)
        self.config = config
        self._random_bytes = random_bytes  # graph seeds of unsigned SecAgg+ rounds: a CSPRNG
        self.strategy = strategy
        self._registry: ClientRegistry
        if registry is not None:
            self._registry = registry
        elif token_source is not None:
            self._registry = Registry(config.client_timeout_s, token_source, limits=config.limits)
        else:
            self._registry = Registry(config.client_timeout_s, limits=config.limits)
        self._model = RoundModel.of(initial_params) if initial_params is not None else None
        self._round = 0
        self._state: EngineState = Waiting()  # the phase follows from it (`phase`)
        self._task_seq = 0
        self._closed: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._records: list[RoundRecord] = []
        self._unread = 0
        self._boundary: EngineSnapshot | None = None
        self._distributed = DistributedAccountant()

    @classmethod
    def restore(
        cls,
        config: EngineConfig,
        strategy: Strategy,
        snapshot: EngineSnapshot,
        *,
        model_spec: ModelSpec | None = None,
        token_source: Callable[[int], bytes] | None = None,
        registry: ClientRegistry | None = None,
    ) -> RoundEngine:
        """An engine that goes on from `snapshot` (a round boundary); clients must join again.

        Raises:
            ValueError: the snapshot is past `config.num_rounds` or does not match `model_spec`.
        """
        if snapshot.round > config.num_rounds:
            raise ValueError(
                f"snapshot is at round {snapshot.round}, past num_rounds ({config.num_rounds})"
            )
        engine = cls(config, strategy, initial_params=snapshot.params, model_spec=model_spec,
                     token_source=token_source, registry=registry)
        if isinstance(strategy, StatefulStrategy):
            strategy.load_state_arrays(snapshot.strategy_state)
        engine._round, engine._task_seq = snapshot.round, snapshot.task_seq
        engine._records = list(snapshot.records)
        engine._distributed = DistributedAccountant(snapshot.distributed_dp)
        engine._boundary = snapshot
        engine._state = Finished() if snapshot.round >= config.num_rounds else Waiting()
        return engine

    # ----------------------------------------------------------------- queries
    @property
    def phase(self) -> Phase:
        """The current phase of the run: what the state object is."""
        return phase_of(self._state)

    @property
    def round_number(self) -> int:
        """The training round in progress or last completed (0 before the first)."""
        return self._round

    @property
    def params(self) -> dict[str, Array] | None:
        """The current global model (read-only views), or None before initialization."""
        return self._model.params if self._model else None

    @property
    def _task(self) -> TaskRound | None:
        return self._state.task if isinstance(self._state, Initializing | RoundOpen) else None

    @property
    def open_task_id(self) -> str | None:
        """The id of the task round now open, if any."""
        return self._task.task_id if self._task else None

    def is_task_open(self, task_id: str) -> bool:
        """Whether results for `task_id` are still taken (uploads for others are ended)."""
        return task_id == self.open_task_id

    @property
    def progress(self) -> tuple[object, ...]:
        """Changes whenever a waiting client may have new work (drivers wake long-polls on it)."""
        task = self._task
        inner = task.collector.progress() if task else None
        return (self.phase, self._round, self.open_task_id, inner)

    def next_deadline(self) -> float | None:
        """When the engine next acts on its own (a round or protocol-phase deadline)."""
        task = self._task
        if task is None:
            return None
        inner = task.collector.inner_deadline()
        return task.deadline if inner is None else min(task.deadline, inner)

    def open_clients(self) -> list[str]:
        """Clients whose task in the open round is still outstanding (sorted)."""
        task = self._task
        return sorted(c for c in task.selected if task.has_work_for(c)) if task else []

    @property
    def records(self) -> list[RoundRecord]:
        """Every completed round so far."""
        return list(self._records)

    def snapshot(self) -> EngineSnapshot | None:
        """The state after the last completed round (None before one completed)."""
        return self._boundary

    def pop_new_records(self) -> list[RoundRecord]:
        """Rounds completed since the last call (for logging and history writers)."""
        new = self._records[len(self._records) - self._unread :] if self._unread else []
        self._unread = 0
        return new

    def retry_after(self, client_id: str, *, now: float) -> float:
        """How long `client_id` should wait before asking for work again (a query, e.g. for the
        retry hint after a decline): what is left of its INITIALIZE backoff, else
        `config.retry_after_s`."""
        left = self._init_backoff.remaining(client_id, now) if self._model is None else 0.0
        return left if left > 0 else self.config.retry_after_s

    def available_clients(self, now: float) -> list[str]:
        """Clients that could be selected now."""
        return self._registry.available(now)

    # ----------------------------------------------------------------- requests
    def join(
        self,
        client_id: str,
        *,
        now: float,
        protocol_version: int = PROTOCOL_VERSION,
        properties: dict[str, str] | None = None,
    ) -> bytes:
        """Register a client and return its session token."""
        if protocol_version != PROTOCOL_VERSION:
            raise EngineError(
                Reason.UNSUPPORTED,
                f"protocol version {protocol_version} is not supported; this coordinator "
                f"speaks version {PROTOCOL_VERSION}: upgrade the client",
            )
        roster = self.config.secagg.roster if self.config.secagg is not None else None
        if roster is not None and client_id not in roster:
            raise EngineError(
                Reason.NOT_ALLOWED,
                f"client {client_id!r} is not on this federation's roster: ask the operator to "
                "add its identity key (`fedcore identity`)",
            )
        return self._registry.join(client_id, now=now, properties=properties or {})

    def authenticate(self, client_id: str, session: bytes, *, now: float) -> None:
        """Check a request's credentials and note that the client is alive."""
        self._registry.authenticate(client_id, session, now)
        self._registry.touch(client_id, now)

    def poll(self, client_id: str, *, now: float) -> TaskReply:
        """The client's task in the open round, or when to ask again, or that the run is over.

        A query: it changes nothing (drivers call `tick` to let time pass)."""
        if isinstance(self._state, Finished):
            return Done(reason=self._done_reason())
        task = self._task
        step = task.collector.next_step(client_id) if task and task.is_open_for(client_id) else None
        if task is None or step is None:
            return Wait(retry_after_s=self.config.retry_after_s, reason=self._wait_reason(client_id))
        return Task(
            round=task.number,
            task_id=task.task_id,
            kind=step.kind,
            train=task.train_config,
            time_left_s=max(0.0, task.deadline - now),
            model_spec=task.model.spec if task.model else self._model_spec or EMPTY_SPEC,
            secagg=step.secagg,
        )

    def model_for(self, client_id: str, task_id: str, *, now: float) -> RoundModel:
        """The model a client's open task is about (a query: it changes nothing)."""
        task = self._open_task(client_id, task_id)
        if task.model is None:
            raise EngineError(  # FAILED_PRECONDITION: this task, not the request, is the cause
                Reason.NOT_ASSIGNED,
                f"task {task_id} has no model to download: an INITIALIZE task is answered with "
                "the client's own initial parameters, without a download",
            )
        return task.model

    def check_result(self, header: ResultHeader, *, now: float) -> ModelSpec:
        """Validate a result's header before its payload arrives; returns the spec to expect.

        A query: it changes nothing (drivers call `tick` to let time pass)."""
        return self._checked(header)[1]

    def submit(self, result: TaskResult, *, now: float) -> None:
        """Let time pass to `now`, then accept a complete result: validate it once, fold it in.

        The engine takes ownership of `result.tensors`: aggregators may scale them in place.
        """
        self.tick(now)
        header = result.header
        task, expected = self._checked(header)
        if header.declined_reason:
            task.gone[header.client_id] = f"declined: {header.declined_reason}"
            task.collector.drop(header.client_id, now)
            if header.permanent:
                self._registry.exclude(header.client_id, header.declined_reason)
        else:
            self._validate_tensors(result.tensors, expected)
            accepted = task.collector.accept(header.client_id, result, now)
            if accepted.metrics_weight is not None:
                task.metrics.add(header.metrics, accepted.metrics_weight)
                self._track_epsilon(task, header)
            if accepted.complete:
                task.received.add(header.client_id)
        self._settle(now)

    def leave(self, client_id: str, *, now: float) -> None:
        """The client leaves; an open task of its counts as dropped at once, in any phase."""
        if self._task is not None and self._task.is_open_for(client_id):
            self._task.gone[client_id] = LEFT
            self._task.collector.drop(client_id, now)
        self._registry.remove(client_id)
        self._settle(now)

    def tick(self, now: float) -> None:
        """Advance time: close settled rounds and start the next when clients are available."""
        self._settle(now)
        if isinstance(self._state, Waiting):
            self._try_start(now)

    # ----------------------------------------------------------------- internals
    def _enter(self, state: EngineState) -> None:
        """Move to `state`, whose phase `TRANSITIONS` must allow from the current one."""
        before, after = self.phase, phase_of(state)
        if after not in TRANSITIONS[before]:
            raise RuntimeError(f"engine bug: no transition {before.value} -> {after.value}")
        self._state = state

    def _checked(self, header: ResultHeader) -> tuple[TaskRound, ModelSpec]:
        """The open task a result belongs to and the payload layout it must have."""
        task = self._open_task(header.client_id, header.task_id)
        if header.declined_reason:
            return task, EMPTY_SPEC
        expected = task.collector.expected_spec(task.task_id, header)
        if task.kind is TaskKind.INITIALIZE and self._model_spec is not None:
            try:
                check_matches(expected, self._model_spec)
            except WireError as err:
                raise EngineError(Reason.INVALID, f"initial parameters rejected: they do not "
                                  f"match the run's model spec: {err}") from err
        return task, expected

    def _open_task(self, client_id: str, task_id: str) -> TaskRound:
        task = self._task
        if task is None or task.task_id != task_id:
            if task_id in self._closed:
                raise EngineError(Reason.LATE, f"task {task_id} is closed ({self._closed[task_id]})")
            raise EngineError(Reason.NOT_ASSIGNED, f"no open task {task_id!r} for {client_id!r}")
        if client_id not in task.selected:
            raise EngineError(Reason.NOT_ASSIGNED, f"{client_id!r} was not selected for {task_id}")
        if client_id in task.received:
            raise EngineError(Reason.DUPLICATE, f"{client_id!r} already reported for {task_id}")
        if client_id in task.gone:
            raise EngineError(
                Reason.LATE, f"{client_id!r} counts as dropped from {task_id}: {task.gone[client_id]}"
            )
        return task

    def _validate_tensors(self, tensors: dict[str, Array], expected: ModelSpec) -> None:
        try:
            check_matches(spec_of(tensors), expected)
            check_finite(tensors)
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result rejected: {err}") from err

    def _track_epsilon(self, task: TaskRound, header: ResultHeader) -> None:
        spent = header.metrics.get(Metric.EPSILON)
        if spent is not None:  # privacy is reported as the worst case over clients
            task.max_epsilon = max(spent, task.max_epsilon or 0.0)

    def _settle(self, now: float) -> None:
        if self._task is not None:
            self._task.collector.on_time(now)
        while isinstance(state := self._state, Initializing | RoundOpen) and (
            state.task.is_settled(now)
        ):
            task = state.task
            self._closed[task.task_id] = "deadline passed" if now >= task.deadline else "round closed"
            while len(self._closed) > 64:
                self._closed.popitem(last=False)
            match state:
                case Initializing():
                    self._close_initialize(task, now)
                case RoundOpen() if task.kind is TaskKind.TRAIN:
                    self._close_train(state, now)
                case RoundOpen():
                    self._close_evaluate(state, now)
            assert self._state is not state, "engine bug: a settled task left its state open"
            if isinstance(self._state, Waiting):
                self._try_start(now)

    def _try_start(self, now: float) -> None:
        available = self._registry.count_available(now)
        if self._model is None:
            if self._initializer(now) is not None:
                task = self._open(TaskKind.INITIALIZE, SelectionConfig(count=1), available, now)
                self._enter(Initializing(task))
            return
        if available < self.config.train.min_available:
            return
        self._round += 1
        draft = RecordDraft(round=self._round, opened_at=now)
        task = self._open(TaskKind.TRAIN, self.config.train, available, now)
        draft.clients_selected = len(task.selected)
        self._enter(RoundOpen(task, draft))

    def _open(
        self, kind: TaskKind, sel: SelectionConfig, available: int, now: float
    ) -> TaskRound:
        self._task_seq += 1
        rng = round_rng(self.config.seed, self._round, f"{kind.value}/{self._task_seq}")
        secure = self.config.secagg if kind is TaskKind.TRAIN else None
        count = sel.to_select(available)
        if secure is not None:
            count = min(count, secure.max_clients)
        if kind is TaskKind.INITIALIZE:
            first = self._initializer(now, rng)
            selected = [first] if first is not None else []
        else:
            selected = self._registry.select(count, rng, now)
        timeout = self.config.eval_timeout_s if kind is TaskKind.EVALUATE else self.config.round_timeout_s
        model = self._model if kind is not TaskKind.INITIALIZE else None
        return TaskRound(
            kind=kind,
            number=self._round,
            task_id=f"t{self._task_seq}-{kind.value}-r{self._round}",
            selected=frozenset(selected),
            target=sel.target(available),
            min_results=sel.min_results,
            opened_at=now,
            deadline=now + timeout,
            model=model,
            train_config=self.strategy.train_config(self._round) if kind is TaskKind.TRAIN
            else TrainConfig(),
            collector=self._collector(kind, sel, selected, available, now),
        )

    def _collector(
        self, kind: TaskKind, sel: SelectionConfig, selected: list[str], available: int, now: float
    ) -> Collector:
        """Secure aggregation for train tasks when configured, else the plain collector."""
        secure = self.config.secagg
        if kind is TaskKind.TRAIN and secure is not None and self._model is not None:
            return SecureRound(
                secure,
                selected=selected,
                model_spec=self._model.spec,
                round_id=self._task_seq,
                graph_seed=self._random_bytes(32),  # never the seeded selection rng
                now=now,
                target=sel.target(available),
            )
        return PlainCollector(
            kind,
            model=self._model if kind is not TaskKind.INITIALIZE else None,
            aggregator=self._aggregator(len(selected), available) if kind is TaskKind.TRAIN
            else None,
            target=sel.target(available),
            min_results=sel.min_results,
            max_payload_bytes=self.config.max_payload_bytes,
        )

    def _initializer(self, now: float, rng: random.Random | None = None) -> str | None:
        """A client to ask for the initial parameters: one not backing off (random with `rng`,
        else the first in order), or None."""
        return self._init_backoff.pick(self._registry.available(now), now, rng)

    def _close_initialize(self, task: TaskRound, now: float) -> None:
        """The first result becomes the model; without one the engine waits, and does not ask
        the client that failed the task again before its backoff passed."""
        try:
            self._model = RoundModel.of(task.collector.aggregate().update, owned=True)
            self._init_backoff.clear()
        except RoundFailed:
            self._init_backoff.failed(task.selected, now)
        self._enter(Waiting())

    def _close_train(self, state: RoundOpen, now: float) -> None:
        task, draft = state.task, state.draft
        draft.results_received = len(task.received)
        draft.train_loss = task.metrics.result().get(Metric.LOSS)
        if task.max_epsilon is not None:
            draft.metrics[Metric.EPSILON] = task.max_epsilon
        self._account_distributed(task, draft)
        try:
            aggregate = task.collector.aggregate()
        except RoundFailed as failure:
            draft.status = RoundStatus.FAILED
            draft.reason = f"{failure}{task.closed_because(now)}"
            self._finish_round(draft, now)
            return
        draft.results_received = aggregate.count
        assert self._model is not None
        params = self.strategy.apply(self._model.params, aggregate)
        try:
            check_finite(params)
        except WireError as err:  # updates at the edge of the dtype's range: clients' doing
            draft.status = RoundStatus.FAILED
            draft.reason = f"the new model is not finite ({err}); the model is unchanged"
            self._finish_round(draft, now)
            return
        self._model = RoundModel.of(params, owned=True)
        draft.metrics.update(aggregate.measurements)
        if not self._open_evaluation(draft, now):
            self._finish_round(draft, now)

    def _open_evaluation(self, draft: RecordDraft, now: float) -> bool:
        """Open the round's evaluation if one is due and enough clients are available."""
        selection = self.config.evaluate
        if selection is None or not self._evaluation_due():
            return False
        available = self._registry.count_available(now)
        if available < selection.min_results:
            draft.reason = "evaluation skipped: too few clients available"
            return False
        self._enter(RoundOpen(self._open(TaskKind.EVALUATE, selection, available, now), draft))
        return True

    def _aggregator(self, selected: int, available: int) -> Aggregator:
        """The round's aggregator; a `SampledStrategy` learns the real sampling (its ε uses it)."""
        if isinstance(self.strategy, SampledStrategy):
            sampling = Sampling(selected=selected, available=available)
            return self.strategy.sampled_aggregator(self._round, sampling)
        return self.strategy.aggregator(self._round)

    def _account_distributed(self, task: TaskRound, draft: RecordDraft) -> None:
        """Price a distributed-DP round at its own setting in the run's ledger, and report ε.

        Every such round counts, also one that fails (conservative: the clients did add noise
        for it and may have sent it); the ledger is checkpointed, so a restart never re-prices.
        """
        noise = task.collector.noise()
        if noise is None:
            return
        self._distributed.record(noise.step())
        key, eps = self._distributed.epsilon(noise.config.delta)
        draft.metrics[key] = eps

    def _close_evaluate(self, state: RoundOpen, now: float) -> None:
        task, draft = state.task, state.draft
        if task.succeeded:
            draft.evaluated(task.metrics.result(), len(task.received))
        else:
            draft.reason = f"evaluation failed: {len(task.received)} results"
        self._finish_round(draft, now)

    def _finish_round(self, draft: RecordDraft, now: float) -> None:
        self._records.append(draft.finish(now))
        self._unread += 1
        self._enter(Finished() if self._round >= self.config.num_rounds else Waiting())
        assert self._model is not None
        self._boundary = EngineSnapshot(
            round=self._round, task_seq=self._task_seq, params=self._model.params,
            records=tuple(self._records),
            strategy_state=(
                self.strategy.state_arrays() if isinstance(self.strategy, StatefulStrategy) else {}
            ),
            distributed_dp=self._distributed.steps,
        )

    def _evaluation_due(self) -> bool:
        cfg = self.config
        return cfg.evaluate is not None and (
            self._round % cfg.eval_every == 0 or self._round == cfg.num_rounds
        )

    def _wait_reason(self, client_id: str) -> str:
        match self.phase:
            case Phase.WAITING if self._model is None and client_id in self._init_backoff:
                return "waiting: the initial model is asked of other clients first"
            case Phase.WAITING:
                return "waiting for clients to join"
            case _:
                return f"round {self._round} ({self.phase.value}) is full"

    def _done_reason(self) -> str:
        return f"the run finished after {self._round} rounds"
