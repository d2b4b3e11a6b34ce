"""A `BufferedEngine` with the surface the gRPC coordinator drives (`CoordinatorServer`,
`CoordinatorService`): sessions, result checks before the payload, records, phases.

Clients need nothing new: they join, ask for work, download the model of their task, train and
submit as in rounds (`Task.round` is the version their task builds on + 1). What differs from
round-based serving:

- a hand-out does not wake other clients' long polls (`progress` changes when the run ends,
  and with secure buffers when a group forms or its protocol moves on; uploads are ended only
  for tasks that closed, `is_task_open`); a waiting client hears of a free slot at its next
  poll;
- every server step becomes one `RoundRecord` (`round` = the new version, `clients_selected` =
  `results_received` = K, metrics `mean_staleness`, `max_staleness`, `staleness_weight`), so
  the history, logs and metrics work unchanged; a step is reported once its version's
  evaluation (`eval_every`, `eval_clients`) closed, with its loss and accuracy;
- `snapshot()` is the engine's (`BufferedEngine.snapshot`), for a checkpoint after each server
  step; a coordinator built on a restored engine reports its earlier steps in `records` but
  not again as new ones;
- with `[secagg]` the engine is a `fedcore.engine.buffered_secure.SecureBufferedEngine`: each
  buffer is one secure-aggregation group, whose members answer its protocol steps as in a
  secure round; a roster, when set, is checked at join.
"""

from __future__ import annotations

from fedcore.engine.buffered import BufferedEngine, BufferedSnapshot, BufferRecord
from fedcore.engine.config import EngineConfig
from fedcore.engine.engine import Phase
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.model import RoundModel
from fedcore.engine.records import RoundRecord, RoundStatus
from fedcore.engine.registry import ClientRegistry, Registry
from fedcore.protocol.messages import PROTOCOL_VERSION, ResultHeader, TaskReply, TaskResult
from fedcore.protocol.metric_keys import Metric
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec


class BufferedCoordinator:
    """Serve `engine` over gRPC: `CoordinatorServer(BufferedCoordinator(engine, config))`.

    Args:
        engine: the FedBuff state machine.
        config: what the service reads besides rounds: limits, chunk and payload sizes, the
            client timeout, `retry_after_s` (its round settings are not used).
        registry: who joined (default: sessions as the round engine keeps them).
    """

    def __init__(self, engine: BufferedEngine, config: EngineConfig, *,
                 registry: ClientRegistry | None = None) -> None:
        self.buffered = engine
        self.config = config
        self._registry: ClientRegistry = registry if registry is not None else Registry(
            config.client_timeout_s, limits=config.limits)  # an empty registry is falsy
        self._models: dict[int, RoundModel] = {}
        self._records: list[RoundRecord] = []
        self._unread = 0
        self._last_at: float | None = None
        self._collect()  # a restored engine's steps are history, not new
        self._unread = 0
        self._last_at = None  # their times are another process's clock: durations restart

    # ----------------------------------------------------------------- queries
    @property
    def phase(self) -> Phase:
        """TRAINING until the last update, then DONE."""
        return Phase.DONE if self.buffered.done else Phase.TRAINING

    @property
    def round_number(self) -> int:
        """The model version (server steps taken)."""
        return self.buffered.version

    @property
    def params(self) -> dict[str, Array]:
        """The current global model."""
        return self.buffered.params

    @property
    def open_task_id(self) -> str | None:
        """None: many tasks are open at once (the service reads it when `progress` changes,
        i.e. at the end of the run, to end every upload still in flight)."""
        return None

    @property
    def progress(self) -> tuple[object, ...]:
        """Changes when the run ends and, with secure buffers, whenever a group forms or moves
        to a new protocol phase (see the module docstring)."""
        return ("buffered", self.buffered.done, self.buffered.activity)

    def is_task_open(self, task_id: str) -> bool:
        """Whether results for `task_id` are still taken (uploads for others are ended)."""
        return self.buffered.is_out(task_id)

    @property
    def records(self) -> list[RoundRecord]:
        """One record per server step."""
        self._collect()
        return list(self._records)

    def pop_new_records(self) -> list[RoundRecord]:
        """Records of the server steps since the last call."""
        self._collect()
        new = self._records[len(self._records) - self._unread:] if self._unread else []
        self._unread = 0
        return new

    def snapshot(self) -> BufferedSnapshot:
        """What a checkpoint keeps (see `BufferedEngine.snapshot`)."""
        return self.buffered.snapshot()

    def next_deadline(self) -> float | None:
        """The earliest deadline of an outstanding task."""
        return self.buffered.next_deadline()

    def open_clients(self) -> list[str]:
        """Clients with a task out (sorted)."""
        return sorted(self.buffered.clients_out())

    def available_clients(self, now: float) -> list[str]:
        """Clients connected now."""
        return self._registry.available(now)

    def retry_after(self, client_id: str, *, now: float) -> float:
        """`config.retry_after_s`."""
        return self.config.retry_after_s

    # ----------------------------------------------------------------- requests
    def join(self, client_id: str, *, now: float, protocol_version: int = PROTOCOL_VERSION,
             properties: dict[str, str] | None = None) -> bytes:
        """Register a client and return its session token."""
        self._start_clock(now)
        if protocol_version != PROTOCOL_VERSION:
            raise EngineError(Reason.UNSUPPORTED, f"protocol version {protocol_version} is not "
                              f"supported; this coordinator speaks {PROTOCOL_VERSION}")
        roster = self.config.secagg.roster if self.config.secagg is not None else None
        if roster is not None and client_id not in roster:
            raise EngineError(Reason.NOT_ALLOWED, f"client {client_id!r} is not on this "
                              "federation's roster: ask the operator to add its identity key "
                              "(`fedcore identity`)")
        return self._registry.join(client_id, now=now, properties=properties or {})

    def authenticate(self, client_id: str, session: bytes, *, now: float) -> None:
        """Check a request's credentials and note that the client is alive."""
        self._registry.authenticate(client_id, session, now)
        self._registry.touch(client_id, now)

    def poll(self, client_id: str, *, now: float) -> TaskReply:
        """A task while a slot is free (the same one again while the client has one out)."""
        self._start_clock(now)
        self.buffered.note_available(len(self._registry.available(now)))
        return self.buffered.poll(client_id, now=now)

    def model_for(self, client_id: str, task_id: str, *, now: float) -> RoundModel:
        """The model version the client's task trains from."""
        version = self.buffered.version_of(client_id, task_id)
        model = self._models.get(version)
        if model is None:
            self._models = {v: m for v, m in self._models.items()
                            if v in self.buffered.versions_held()}
            model = self._models[version] = RoundModel.of(self.buffered.model_for(task_id))
        return model

    def check_result(self, header: ResultHeader, *, now: float) -> ModelSpec:
        """The spec the result's payload must have (a query)."""
        return self.buffered.expected_spec(header)

    def submit(self, result: TaskResult, *, now: float) -> None:
        """Fold a result (see `BufferedEngine.submit`)."""
        self.buffered.version_of(result.header.client_id, result.header.task_id)
        self.buffered.submit(result, now=now)
        if result.header.declined_reason and result.header.permanent:
            self._registry.exclude(result.header.client_id, result.header.declined_reason)

    def leave(self, client_id: str, *, now: float) -> None:
        """The client leaves; its outstanding task is dropped."""
        self.buffered.release(client_id)
        self._registry.remove(client_id)

    def tick(self, now: float) -> None:
        """Expire overdue tasks."""
        self._start_clock(now)
        self.buffered.tick(now)

    # ----------------------------------------------------------------- internals
    def _start_clock(self, now: float) -> None:
        """The first time seen is when the first step's duration starts counting."""
        if self._last_at is None:
            self._last_at = now

    def _collect(self) -> None:
        for record in self.buffered.settled_records()[len(self._records):]:
            previous = record.at_s if self._last_at is None else self._last_at
            self._records.append(as_round_record(record, previous))
            self._last_at = record.at_s
            self._unread += 1


def as_round_record(record: BufferRecord, previous_at: float) -> RoundRecord:
    """Server step `record` as a round record (see the module docstring); its duration is the
    time since the step before (`previous_at`)."""
    k = len(record.staleness)
    metrics = dict(record.measurements)
    metrics["max_staleness"] = float(max(record.staleness))
    evaluation = record.evaluation
    return RoundRecord(round=record.version, status=RoundStatus.OK, clients_selected=k,
                       results_received=k, train_loss=None, loss=evaluation.get(Metric.LOSS),
                       accuracy=evaluation.get(Metric.ACCURACY),
                       eval_clients=record.eval_clients,
                       duration_s=max(record.at_s - previous_at, 0.0), metrics=metrics)
