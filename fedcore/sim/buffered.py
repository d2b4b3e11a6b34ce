"""The in-process driver of asynchronous buffered aggregation (`fedcore.engine.buffered`).

Virtual clients are drawn uniformly at random among the idle ones whenever the engine has a free
slot; each trains (through the deployed client's `TaskHandler`, on the model version it was
handed) and its result arrives `TimingModel.task_seconds` simulated seconds later, so slow
devices deliver stale results while fast ones keep the buffer filling. Lost tasks
(`TimingModel.dropout`) never arrive and expire at their deadline. When the engine evaluates
(`BufferedConfig.eval_every`), idle clients also take its evaluation tasks, each a pass over
their examples in simulated time. The simulated clock is
comparable with `InProcessDriver`'s for synchronous rounds under the same `TimingModel`: that
is how FedBuff's wall-clock advantage with slow devices is measured.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from fedcore.client.app import ClientApp
from fedcore.engine.buffered import BufferedEngine, BufferRecord, Outcome
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import Task, TaskKind, TaskResult
from fedcore.protocol.params import Array, Params
from fedcore.sim.driver import HandlerFactory, answer
from fedcore.sim.population import Population
from fedcore.sim.runners import TaskRunner
from fedcore.sim.scaffold import ScaffoldHandlers
from fedcore.sim.timing import TimingModel

log = logging.getLogger(__name__)


def task_seconds(timing: TimingModel, index: int, task: Task, examples: int) -> float:
    """Simulated seconds client `index` takes for `task` over `examples` examples: its local
    epochs for training, one pass for evaluation (as `InProcessDriver` times them)."""
    epochs = task.train.local_epochs if task.kind is TaskKind.TRAIN else 1
    return timing.task_seconds(index, max(examples, 1), epochs)


@dataclass(frozen=True, slots=True)
class BufferedSimulation:
    """What a simulated buffered run produced."""

    records: list[BufferRecord]
    params: dict[str, Array]
    simulated_s: float
    tasks: int


class DriverOptions(TypedDict, total=False):
    """The keyword arguments every buffered driver takes (see `EventDriver`)."""

    timing: TimingModel | None
    on_update: Callable[[BufferRecord, Params], None] | None
    on_record: Callable[[BufferRecord], None] | None
    handler: HandlerFactory | None
    seed: int


class EventDriver(abc.ABC):
    """What both buffered drivers share: the virtual clients, the callbacks, the results in
    flight (a heap by simulated arrival time) and the loop that moves the clock to the next
    arrival or engine deadline, whichever comes first.

    Args:
        runner: does the local work of a cohort of clients (one call per cohort).
        timing: how long each client's work takes, and which clients are lost.
        on_update: called after each server step with its record and the new model.
        on_record: called with each server step's record once its evaluation (if any) closed.
        handler: builds a client's `TaskHandler` (default: `fedcore.sim.scaffold.ScaffoldHandlers`).
        seed: which idle clients are drawn.
    """

    stuck = "no task is out and none can be handed out"  # why `run` cannot go on

    def __init__(
        self,
        engine: BufferedEngine,
        population: Population,
        runner: TaskRunner,
        *,
        timing: TimingModel | None = None,
        on_update: Callable[[BufferRecord, Params], None] | None = None,
        on_record: Callable[[BufferRecord], None] | None = None,
        handler: HandlerFactory | None = None,
        seed: int = 0,
    ) -> None:
        self.engine, self.population, self.runner = engine, population, runner
        self.timing = timing or TimingModel()
        self._on_update = on_update
        self._on_record = on_record
        self._reported = 0
        engine.note_available(len(population))  # evaluations never wait for more
        self._handler: HandlerFactory = handler or ScaffoldHandlers(population)
        self._rng = np.random.default_rng(seed)
        self._arrivals: list[tuple[float, int, str, TaskResult]] = []
        self._order = itertools.count()
        self.tasks = 0
        self.now = 0.0

    def run(self) -> BufferedSimulation:
        """Run until the engine is done; returns the records and the final model."""
        engine = self.engine
        while not engine.done:
            self._start_work()
            next_arrival = self._arrivals[0][0] if self._arrivals else None
            deadline = engine.next_deadline()
            if next_arrival is None and deadline is None:
                raise RuntimeError(f"{self.stuck}: the population is smaller than the buffer, "
                                   "or every client declines")
            if next_arrival is None or (deadline is not None and deadline < next_arrival):
                assert deadline is not None
                self.now = max(self.now, deadline)
                engine.tick(self.now)
            else:
                at, _, cid, result = heapq.heappop(self._arrivals)
                self.now = at
                self._arrived(cid, result)
            self._forget_finished()
            self._reported = self._report_settled()
        return BufferedSimulation(records=engine.records,
                                  params={k: v.copy() for k, v in engine.params.items()},
                                  simulated_s=self.now, tasks=self.tasks)

    @abc.abstractmethod
    def _start_work(self) -> None:
        """Hand out what the engine has for idle clients now, and start their local work."""

    @abc.abstractmethod
    def _arrived(self, cid: str, result: TaskResult) -> None:
        """`cid`'s result reaches the coordinator (at `self.now`)."""

    @abc.abstractmethod
    def _forget_finished(self) -> None:
        """Clients the engine no longer counts as busy become idle."""

    def _send(self, cid: str, result: TaskResult, seconds: float) -> None:
        """`cid`'s result is on its way; it arrives `seconds` from now."""
        heapq.heappush(self._arrivals, (self.now + seconds, next(self._order), cid, result))

    def _submit(self, result: TaskResult, *, tolerated: tuple[Reason, ...]) -> Outcome | None:
        """Submit at `self.now`; None when refused for a `tolerated` reason (what it answered
        closed before it arrived)."""
        try:
            outcome = self.engine.submit(result, now=self.now)
        except EngineError as err:
            if err.reason not in tolerated:
                raise
            return None
        if outcome is Outcome.APPLIED and self._on_update is not None:
            self._on_update(self.engine.records[-1], self.engine.params)
        return outcome

    def _report_settled(self) -> int:
        """Hand each server step whose evaluation closed to `on_record`, once, in order."""
        settled = self.engine.settled_records()
        if self._on_record is not None:
            for record in settled[self._reported:]:
                self._on_record(record)
        return len(settled)

    def _draw_idle(self, *taken: Container[str]) -> str:
        """A client drawn at random among those in none of `taken`."""
        size = len(self.population)
        while True:
            cid = self.population.client(int(self._rng.integers(size))).client_id
            if not any(cid in t for t in taken):
                return cid


class BufferedDriver(EventDriver):
    """Drives `engine` to its last update with virtual clients from `population` (see
    `EventDriver` for the arguments)."""

    def __init__(self, engine: BufferedEngine, population: Population, runner: TaskRunner,
                 **options: Unpack[DriverOptions]) -> None:
        super().__init__(engine, population, runner, **options)
        self._busy: dict[str, str] = {}  # client id -> its outstanding task id

    def _start_work(self) -> None:
        self._hand_out()

    def _arrived(self, cid: str, result: TaskResult) -> None:
        if self._busy.get(cid) == result.header.task_id:
            del self._busy[cid]
        self._submit(result, tolerated=(Reason.NOT_ASSIGNED,))  # it may have expired

    def _hand_out(self) -> None:
        """Idle clients ask while a training slot is free or an evaluation wants clients; the
        cohort handed the same kind of task on the same version works in one runner call."""
        engine = self.engine
        handed: dict[str, Task] = {}
        wanted = engine.config.concurrency - engine.outstanding + engine.wants_evaluators
        idle = len(self.population) - len(self._busy)
        for _ in range(min(wanted, idle)):
            cid = self._draw_idle(self._busy, handed)
            reply = engine.poll(cid, now=self.now)
            if not isinstance(reply, Task):
                break
            handed[cid] = reply
        cohorts: dict[tuple[TaskKind, int], dict[str, Task]] = defaultdict(dict)
        for cid, task in handed.items():
            cohorts[task.kind, task.round][cid] = task
        for cohort in cohorts.values():
            self._work(cohort)

    def _work(self, cohort: dict[str, Task]) -> None:
        first = next(iter(cohort.values()))
        params = self.engine.model_for(first.task_id)
        apps = self.runner.run(first, list(cohort), params)
        for cid, task in cohort.items():
            self.tasks += 1
            self._busy[cid] = task.task_id
            app = apps.get(cid)
            if app is None:
                continue  # its local work failed: the task expires
            result = self._answer(cid, task, app, params)
            index = self.population.index_of(cid)
            if self.timing.drops(index, task.round, task.kind.value):
                continue
            self._send(cid, result, task_seconds(self.timing, index, task,
                                                 result.header.num_examples))

    def _answer(self, cid: str, task: Task, app: ClientApp, params: Params) -> TaskResult:
        return answer(self._handler(app, cid), task, params)

    def _forget_finished(self) -> None:
        for cid in [c for c, t in self._busy.items() if not self.engine.is_out(t)]:
            del self._busy[cid]
