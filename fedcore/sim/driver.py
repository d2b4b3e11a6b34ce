"""The in-process driver: the deployment's round engine, fed by virtual clients in memory.

Per engine task it polls every selected client, has a `TaskRunner` prepare all their local
work at once, answers each client's task through the deployed client's `TaskHandler` (its
refusals, result checks and secure-aggregation steps), and submits the results in order of
simulated finishing time with that time as `now`, so deadlines, stragglers, dropouts and
over-selection are decided by the engine, as deployed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fedcore.client.app import ClientApp, ClientAppError, DeclineTask
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineError, Phase, Reason, RoundEngine, RoundRecord
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import SecAggSetup, Task, TaskKind, TaskReply, TaskResult
from fedcore.protocol.params import Array, Params
from fedcore.sim.population import Population
from fedcore.sim.runners import ReplayApp, TaskRunner
from fedcore.sim.scaffold import ScaffoldHandlers
from fedcore.sim.stragglers import PARTIAL_ARRIVAL, StragglerModel
from fedcore.sim.timing import TimingModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a simulated run produced."""

    records: list[RoundRecord]
    params: dict[str, Array]
    simulated_s: float


HandlerFactory = Callable[[ClientApp, str], TaskHandler]
_UNPREPARED = ReplayApp(DeclineTask("no local work was prepared for this client"))


def answer(handler: TaskHandler, task: Task, params: Params) -> TaskResult:
    """The client's result for `task` as the deployed client computes it; what the app
    refuses or gets wrong becomes a decline."""
    try:
        return handler.handle(task, params)
    except DeclineTask as refusal:
        return handler.decline(task, refusal.reason or "declined by the app")
    except (ClientAppError, WireError) as err:
        log.error("%s: task %s: unusable local results: %s", handler.client_id, task.task_id,
                  err)
        return handler.decline(task, f"app error: {err}")


class InProcessDriver:
    """Drives `engine` to the end of its run with virtual clients from `population`.

    Args:
        handler: builds a client's `TaskHandler` around its app and id (default: a plain
            `TaskHandler` that keeps SCAFFOLD's control variate in the population,
            `fedcore.sim.scaffold.ScaffoldHandlers`); pass one with a `floor` or `identity` to
            simulate clients that carry the deployed client's privacy floor or signing key.
    """

    def __init__(
        self,
        engine: RoundEngine,
        population: Population,
        runner: TaskRunner,
        *,
        timing: TimingModel | None = None,
        stragglers: StragglerModel | None = None,
        on_round: Callable[[RoundRecord], None] | None = None,
        handler: HandlerFactory | None = None,
    ) -> None:
        self.engine = engine
        self._handler: HandlerFactory = handler or ScaffoldHandlers(population)
        self.population = population
        self.runner = runner
        self.timing = timing or TimingModel()
        self.stragglers = stragglers or StragglerModel()
        self._on_round = on_round
        self._handlers: dict[str, TaskHandler] = {}  # clients mid-way through a secure round
        self._silent: set[tuple[str | None, str]] = set()  # (task, client) that dropped out
        self.now = 0.0

    def run(self) -> SimulationResult:
        """Run every round; returns the records and the final model."""
        engine = self.engine
        engine.tick(self.now)
        while engine.phase is not Phase.DONE:
            task_id = engine.open_task_id
            clients = [c for c in engine.open_clients() if (task_id, c) not in self._silent]
            if clients:
                self._serve(clients)
            else:  # everyone answered what they could: let the clock reach the next deadline
                deadline = engine.next_deadline()
                if deadline is None:
                    raise RuntimeError(f"engine is {engine.phase.value} with nothing to wait for")
                self.now = max(self.now, deadline)
                engine.tick(self.now)
            for record in engine.pop_new_records():
                if self._on_round is not None:
                    self._on_round(record)
        assert engine.params is not None
        return SimulationResult(
            records=engine.records,
            params={k: v.copy() for k, v in engine.params.items()},
            simulated_s=self.now,
        )

    def _serve(self, clients: list[str]) -> None:
        engine, start = self.engine, self.now
        tasks = {c: engine.poll(c, now=start) for c in clients}
        task = next(iter(tasks.values()))
        if not isinstance(task, Task) or task.kind is TaskKind.INITIALIZE:
            raise RuntimeError("the simulation needs initial parameters and open tasks")
        if task.kind is TaskKind.SECAGG:
            self._secure_steps(tasks)
            return
        deadline = start + task.time_left_s
        model = engine.model_for(clients[0], task.task_id, now=start)
        partial, missed = self._stragglers(clients, task)
        working = [c for c in clients if c not in missed]
        refused = self._screen(tasks, working)
        admitted = [c for c in working if c not in refused]
        apps = self.runner.run(task, admitted, model.params, epochs=partial) if admitted else {}
        if task.kind is TaskKind.TRAIN:
            self._handlers.clear()  # whatever earlier secure rounds left is over
        results = refused | {
            c: self._answer(c, _with_epochs(tasks[c], partial.get(c)), app, model.params)
            for c, app in apps.items()
        }
        arrivals = sorted(
            (
                start + task.time_left_s * PARTIAL_ARRIVAL if cid in partial
                else start + self._seconds(cid, task, self._examples(cid, results[cid])),
                cid,
            )
            for cid in working
            if cid in results and not self._drops(cid, task)
        )
        submitted: set[str] = set()
        for at, cid in arrivals:
            if at >= deadline or engine.open_task_id != task.task_id:
                break
            try:
                engine.submit(results[cid], now=at)
                self.now = at
                submitted.add(cid)
            except EngineError as err:
                if err.reason is not Reason.LATE:
                    raise
        if task.secagg is not None:  # secure: the protocol goes on; the silent stay silent
            for cid in set(clients) - submitted:
                self._handlers.pop(cid, None)
                self._silent.add((task.task_id, cid))
        elif engine.open_task_id == task.task_id:  # the rest missed it: on to the deadline
            self.now = max(self.now, deadline)
            engine.tick(self.now)

    def _screen(self, tasks: dict[str, TaskReply], clients: list[str]) -> dict[str, TaskResult]:
        """The permanent refusals of clients whose privacy floor the task falls below, decided
        before anyone trains (as a deployed client decides before downloading the model), so a
        refusing client spends no privacy."""
        refusals: dict[str, TaskResult] = {}
        for cid in clients:
            refusal = self._handler(_UNPREPARED, cid).screen(_with_epochs(tasks[cid], None))
            if refusal is not None:
                refusals[cid] = refusal
        return refusals

    def _answer(self, cid: str, task: Task, app: ClientApp, params: Params) -> TaskResult:
        """`cid`'s result for `task`, from its `TaskHandler` as a deployed client computes it."""
        handler = self._handler(app, cid)
        result = answer(handler, task, params)
        if isinstance(task.secagg, SecAggSetup) and not result.header.declined_reason:
            self._handlers[cid] = handler  # it holds the client's secure session
        return result

    def _secure_steps(self, tasks: dict[str, TaskReply]) -> None:
        """One protocol step for every client that has one; each answers after its latency."""
        arrivals = []
        for cid, task in tasks.items():
            assert isinstance(task, Task)
            handler = self._handlers.get(cid)
            if handler is None:
                continue  # it dropped (or never trained): it stays silent
            try:
                result = handler.handle(task, None)
            except ClientAppError:  # it refused the step: it releases nothing more
                del self._handlers[cid]
                continue
            arrivals.append((self.now + self.timing.latency_s, cid, result))
        for at, _, result in sorted(arrivals, key=lambda a: (a[0], a[1])):
            self.engine.submit(result, now=at)
            self.now = max(self.now, at)

    def _stragglers(self, clients: list[str], task: Task) -> tuple[dict[str, int], set[str]]:
        if task.kind is not TaskKind.TRAIN:
            return {}, set()
        return self.stragglers.partial_work(clients, task.round, task.train.local_epochs)

    def _examples(self, cid: str, result: TaskResult) -> int:
        """The examples `cid` trained on: a secure result's header hides them (they are in the
        masked sum), its handler knows them."""
        handler = self._handlers.get(cid)
        return handler.trained_examples if handler is not None else result.header.num_examples

    def _seconds(self, cid: str, task: Task, examples: int) -> float:
        index = self.population.index_of(cid)
        epochs = task.train.local_epochs if task.kind is TaskKind.TRAIN else 1
        return self.timing.task_seconds(index, examples, epochs)

    def _drops(self, cid: str, task: Task) -> bool:
        return self.timing.drops(self.population.index_of(cid), task.round, task.kind.value)


def _with_epochs(task: TaskReply, epochs: int | None) -> Task:
    """`task` (each client's own: secure rounds number their clients) as a straggler that
    trains only `epochs` epochs sees it."""
    if not isinstance(task, Task):
        raise TypeError(f"a selected client was not given a task: {task!r}")
    if epochs is None:
        return task
    return dataclasses.replace(task, train=dataclasses.replace(task.train, local_epochs=epochs))
