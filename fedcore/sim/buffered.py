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

import heapq
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

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


def report_settled(engine: BufferedEngine, on_record: Callable[[BufferRecord], None] | None,
                   reported: int) -> int:
    """Hand each server step past the first `reported` whose evaluation closed to
    `on_record`, in order; how many are reported now."""
    settled = engine.settled_records()
    if on_record is not None:
        for record in settled[reported:]:
            on_record(record)
    return len(settled)


@dataclass(frozen=True, slots=True)
class BufferedSimulation:
    """What a simulated buffered run produced."""

    records: list[BufferRecord]
    params: dict[str, Array]
    simulated_s: float
    tasks: int


class BufferedDriver:
    """Drives `engine` to its last update with virtual clients from `population`.

    Args:
        runner: trains the clients handed a task at the same moment (one cohort per call).
        timing: how long each client's task takes, and which are lost.
        on_update: called after each server step with its record and the new model.
        on_record: called with each server step's record once its evaluation (if any) closed.
        handler: builds a client's `TaskHandler` (default: `fedcore.sim.scaffold.ScaffoldHandlers`).
        seed: which idle clients are drawn.
    """

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
        engine.note_available(len(population))  # evaluations never wait for more
        self._reported = 0
        self._handler: HandlerFactory = handler or ScaffoldHandlers(population)
        self._rng = np.random.default_rng(seed)
        self._busy: dict[str, str] = {}  # client id -> its outstanding task id
        self._arrivals: list[tuple[float, int, str, TaskResult]] = []
        self._order = itertools.count()
        self.tasks = 0
        self.now = 0.0

    def run(self) -> BufferedSimulation:
        """Run until the engine is done; returns the records and the final model."""
        engine = self.engine
        while not engine.done:
            self._hand_out()
            next_arrival = self._arrivals[0][0] if self._arrivals else None
            deadline = engine.next_deadline()
            if next_arrival is None and deadline is None:
                raise RuntimeError("no task is out and none can be handed out: the population "
                                   "is smaller than the buffer, or every client declines")
            if next_arrival is None or (deadline is not None and deadline < next_arrival):
                assert deadline is not None
                self.now = max(self.now, deadline)
                engine.tick(self.now)
                self._forget_finished()
                self._report()
                continue
            at, _, cid, result = heapq.heappop(self._arrivals)
            self.now = at
            if self._busy.get(cid) == result.header.task_id:
                del self._busy[cid]
            try:
                outcome = engine.submit(result, now=at)
            except EngineError as err:
                if err.reason is not Reason.NOT_ASSIGNED:
                    raise
                continue  # it expired before it arrived
            self._forget_finished()
            if outcome is Outcome.APPLIED and self._on_update is not None:
                self._on_update(engine.records[-1], engine.params)
            self._report()
        return BufferedSimulation(records=engine.records,
                                  params={k: v.copy() for k, v in engine.params.items()},
                                  simulated_s=self.now, tasks=self.tasks)

    def _hand_out(self) -> None:
        """Idle clients ask while a training slot is free or an evaluation wants clients; the
        cohort handed the same kind of task on the same version works in one runner call."""
        engine = self.engine
        handed: dict[str, Task] = {}
        wanted = engine.config.concurrency - engine.outstanding + engine.wants_evaluators
        idle = len(self.population) - len(self._busy)
        for _ in range(min(wanted, idle)):
            cid = self._draw_idle(handed)
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
            seconds = task_seconds(self.timing, index, task, result.header.num_examples)
            heapq.heappush(self._arrivals, (self.now + seconds, next(self._order), cid, result))

    def _draw_idle(self, handed: dict[str, Task]) -> str:
        size = len(self.population)
        while True:
            cid = self.population.client(int(self._rng.integers(size))).client_id
            if cid not in self._busy and cid not in handed:
                return cid

    def _answer(self, cid: str, task: Task, app: ClientApp, params: Params) -> TaskResult:
        return answer(self._handler(app, cid), task, params)

    def _report(self) -> None:
        self._reported = report_settled(self.engine, self._on_record, self._reported)

    def _forget_finished(self) -> None:
        for cid in [c for c, t in self._busy.items() if not self.engine.is_out(t)]:
            del self._busy[cid]
