"""The in-process driver of FedBuff with secure aggregation (`fedcore.engine.buffered_secure`).

Idle virtual clients are drawn at random and ask for work while the engine has a free slot;
they wait in the group being formed until it fills. A member trains (through the deployed
client's `TaskHandler`, which also keeps its secure-aggregation session) on its group's model
version, and its keys arrive `TimingModel.task_seconds` simulated seconds later; each later
protocol message takes `TimingModel.latency_s`. A member lost to `TimingModel.dropout` never
answers: its group goes on without it at the phase deadline, or aborts below the threshold.
Evaluation tasks (`BufferedConfig.eval_every`) go to idle clients, each a pass over their
examples. The simulated clock is the one `fedcore.sim.buffered.BufferedDriver` and synchronous
rounds use, so the cost of securing buffers shows up as simulated time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from fedcore.client.app import ClientAppError
from fedcore.client.handler import TaskHandler
from fedcore.engine.buffered import BufferRecord, Outcome
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import Task, TaskKind, TaskResult
from fedcore.protocol.params import Params
from fedcore.sim.buffered import BufferedSimulation, report_settled, task_seconds
from fedcore.sim.driver import HandlerFactory, answer
from fedcore.sim.population import Population
from fedcore.sim.runners import TaskRunner
from fedcore.sim.scaffold import ScaffoldHandlers
from fedcore.sim.timing import TimingModel

log = logging.getLogger(__name__)


class SecureBufferedDriver:
    """Drives `engine` to its last update with virtual clients from `population`.

    Args:
        runner: trains the members of a group that opened (one cohort per call).
        timing: how long training and each protocol message take, and which members are lost.
        on_update: called after each server step with its record and the new model.
        on_record: called with each server step's record once its evaluation (if any) closed.
        handler: builds a client's `TaskHandler` (default: `fedcore.sim.scaffold.ScaffoldHandlers`).
        seed: which idle clients are drawn.
    """

    def __init__(
        self,
        engine: SecureBufferedEngine,
        population: Population,
        runner: TaskRunner,
        *,
        timing: TimingModel | None = None,
        on_update: Callable[[BufferRecord, Params], None] | None = None,
        on_record: Callable[[BufferRecord], None] | None = None,
        handler: HandlerFactory | None = None,
        seed: int = 0,
    ) -> None:
        if engine.config.buffer_size > len(population):
            raise ValueError(f"a group needs {engine.config.buffer_size} clients; the "
                             f"population has {len(population)}")
        self.engine, self.population, self.runner = engine, population, runner
        self.timing = timing or TimingModel()
        self._on_update = on_update
        self._on_record = on_record
        engine.note_available(len(population))  # evaluations never wait for more
        self._reported = 0
        self._handler: HandlerFactory = handler or ScaffoldHandlers(population)
        self._rng = np.random.default_rng(seed)
        self._busy: set[str] = set()  # asked for work and not yet out of its group
        self._sessions: dict[str, TaskHandler] = {}  # members that trained: their handler
        self._waiting: set[str] = set()  # an answer of theirs is on its way
        self._silent: set[str] = set()  # lost: they answer nothing more in their group
        self._arrivals: list[tuple[float, int, str, TaskResult]] = []
        self._order = itertools.count()
        self.tasks = 0
        self.failed_groups = 0
        self.now = 0.0

    def run(self) -> BufferedSimulation:
        """Run until the engine is done; returns the records and the final model."""
        engine = self.engine
        while not engine.done:
            self._recruit()
            self._serve()
            next_arrival = self._arrivals[0][0] if self._arrivals else None
            deadline = engine.next_deadline()
            if next_arrival is None and deadline is None:
                raise RuntimeError("no group is open and none can form: the population is "
                                   "smaller than the buffer, or every client declines")
            if next_arrival is None or (deadline is not None and deadline < next_arrival):
                assert deadline is not None
                self.now = max(self.now, deadline)
                engine.tick(self.now)
            else:
                at, _, cid, result = heapq.heappop(self._arrivals)
                self.now = at
                self._waiting.discard(cid)
                self._deliver(result)
            self._forget_finished()
            self._report()
        return BufferedSimulation(records=engine.records,
                                  params={k: v.copy() for k, v in engine.params.items()},
                                  simulated_s=self.now, tasks=self.tasks)

    def _recruit(self) -> None:
        """Idle clients ask for work while a slot is free or an evaluation wants clients."""
        engine = self.engine
        while self._wants_clients() and len(self._busy) < len(self.population):
            cid = self._draw_idle()
            self._busy.add(cid)
            engine.poll(cid, now=self.now)
            if engine.done:
                return

    def _wants_clients(self) -> bool:
        engine = self.engine
        if engine.wants_evaluators:
            return True
        return not engine.trained and engine.outstanding < engine.config.concurrency

    def _serve(self) -> None:
        """Every member answers the step it has now: the cohort of a new group trains, the
        others send their next protocol message; evaluators evaluate."""
        training: dict[str, dict[str, Task]] = defaultdict(dict)
        evaluating: dict[int, dict[str, Task]] = defaultdict(dict)
        for cid in sorted(self._busy - self._waiting - self._silent):
            reply = self.engine.poll(cid, now=self.now)
            if not isinstance(reply, Task):
                continue
            if reply.kind is TaskKind.TRAIN:
                training[reply.task_id][cid] = reply
                continue
            if reply.kind is TaskKind.EVALUATE:
                evaluating[reply.round][cid] = reply
                continue
            session = self._sessions.get(cid)
            if session is None:
                continue
            try:
                result = session.handle(reply, None)
            except ClientAppError as err:  # it refused the step: it releases nothing more
                log.info("%s: %s: %s", cid, reply.task_id, err)
                self._silent.add(cid)
                continue
            self._send(cid, result, self.timing.latency_s)
        for tasks in [*training.values(), *evaluating.values()]:
            self._work(tasks)

    def _work(self, tasks: dict[str, Task]) -> None:
        """A cohort's local work: a new group's training, or an evaluation of one version."""
        first = next(iter(tasks.values()))
        params = self.engine.model_for(first.task_id)
        apps = self.runner.run(first, list(tasks), params)
        for cid, task in tasks.items():
            self.tasks += 1
            app = apps.get(cid)
            index = self.population.index_of(cid)
            if app is None or self.timing.drops(index, task.round, task.kind.value):
                self._silent.add(cid)  # its local work failed, or it is lost
                continue
            handler = self._handler(app, cid)
            result = answer(handler, task, params)
            if task.kind is TaskKind.EVALUATE:
                examples = result.header.num_examples
            else:  # a secure result's header hides its examples
                examples = handler.trained_examples
                if not result.header.declined_reason:
                    self._sessions[cid] = handler
            self._send(cid, result, task_seconds(self.timing, index, task, examples))

    def _send(self, cid: str, result: TaskResult, seconds: float) -> None:
        self._waiting.add(cid)
        heapq.heappush(self._arrivals, (self.now + seconds, next(self._order), cid, result))

    def _deliver(self, result: TaskResult) -> None:
        try:
            outcome = self.engine.submit(result, now=self.now)
        except EngineError as err:
            if err.reason not in (Reason.LATE, Reason.NOT_ASSIGNED):
                raise
            return  # its group closed before it arrived
        if outcome is Outcome.FAILED:
            self.failed_groups += 1
            log.info("a secure buffer failed: %s", self.engine.last_failure)
        elif outcome is Outcome.APPLIED and self._on_update is not None:
            self._on_update(self.engine.records[-1], self.engine.params)

    def _report(self) -> None:
        self._reported = report_settled(self.engine, self._on_record, self._reported)

    def _draw_idle(self) -> str:
        size = len(self.population)
        while True:
            cid = self.population.client(int(self._rng.integers(size))).client_id
            if cid not in self._busy:
                return cid

    def _forget_finished(self) -> None:
        """Members whose group closed are idle again (an answer still on its way is refused)."""
        out = self.engine.clients_out()
        for cid in [c for c in self._busy if c not in out and c not in self._waiting]:
            self._busy.discard(cid)
            self._sessions.pop(cid, None)
            self._silent.discard(cid)
