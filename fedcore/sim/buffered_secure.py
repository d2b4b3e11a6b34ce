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

import logging
from collections import defaultdict
from typing import Unpack

from fedcore.client.app import ClientAppError
from fedcore.client.handler import TaskHandler
from fedcore.engine.buffered import Outcome
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.errors import Reason
from fedcore.protocol.messages import Task, TaskKind, TaskResult
from fedcore.sim.buffered import DriverOptions, EventDriver, task_seconds
from fedcore.sim.driver import answer
from fedcore.sim.population import Population
from fedcore.sim.runners import TaskRunner

log = logging.getLogger(__name__)


class SecureBufferedDriver(EventDriver):
    """Drives `engine` to its last update with virtual clients from `population` (see
    `EventDriver` for the arguments: here `runner` trains the members of a group that opened,
    and `timing` also sets how long each protocol message takes).

    Raises:
        ValueError: the population is smaller than a group.
    """

    engine: SecureBufferedEngine
    stuck = "no group is open and none can form"

    def __init__(self, engine: SecureBufferedEngine, population: Population,
                 runner: TaskRunner, **options: Unpack[DriverOptions]) -> None:
        if engine.config.buffer_size > len(population):
            raise ValueError(f"a group needs {engine.config.buffer_size} clients; the "
                             f"population has {len(population)}")
        super().__init__(engine, population, runner, **options)
        self._busy: set[str] = set()  # asked for work and not yet out of its group
        self._sessions: dict[str, TaskHandler] = {}  # members that trained: their handler
        self._waiting: set[str] = set()  # an answer of theirs is on its way
        self._silent: set[str] = set()  # lost: they answer nothing more in their group
        self.failed_groups = 0

    def _start_work(self) -> None:
        self._recruit()
        self._serve()

    def _arrived(self, cid: str, result: TaskResult) -> None:
        self._waiting.discard(cid)
        # a group that closed before the answer arrived refuses it
        if self._submit(result, tolerated=(Reason.LATE, Reason.NOT_ASSIGNED)) is Outcome.FAILED:
            self.failed_groups += 1
            log.info("a secure buffer failed: %s", self.engine.last_failure)

    def _recruit(self) -> None:
        """Idle clients ask for work while a slot is free or an evaluation wants clients."""
        engine = self.engine
        while self._wants_clients() and len(self._busy) < len(self.population):
            cid = self._draw_idle(self._busy)
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
        super()._send(cid, result, seconds)

    def _forget_finished(self) -> None:
        """Members whose group closed are idle again (an answer still on its way is refused)."""
        out = self.engine.clients_out()
        for cid in [c for c in self._busy if c not in out and c not in self._waiting]:
            self._busy.discard(cid)
            self._sessions.pop(cid, None)
            self._silent.discard(cid)
