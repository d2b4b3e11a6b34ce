"""What a running client reports to its host app: round events, callbacks, and a status snapshot.

Callbacks run on the client's own thread, one at a time, in event order. An exception raised
by a callback is logged and otherwise ignored: a bug in the host's bookkeeping never stops
training. Keep callbacks short; a slow one delays the client.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fedcore.protocol.messages import TaskKind
from fedcore.protocol.params import Metrics

log = logging.getLogger(__name__)


class ClientPhase(enum.Enum):
    """What the client is doing now."""

    IDLE = "idle"  # not started, or not eligible (it left the coordinator until it is)
    WAITING = "waiting"  # joined; asking for work, or backing off after a network error
    DOWNLOADING = "downloading"  # fetching the global model of a task
    TRAINING = "training"  # the app's fit/evaluate/get_parameters is running
    UPLOADING = "uploading"  # streaming a result (or a refusal) to the coordinator
    STOPPED = "stopped"  # ended: stopped by the host, or the run is over
    FAILED = "failed"  # ended with an error (see `ClientStatus.last_error`)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStatus:
    """A consistent snapshot of a client's phase and counters."""

    client_id: str
    phase: ClientPhase = ClientPhase.IDLE
    tasks_selected: int = 0  # tasks the coordinator assigned (eligible or not)
    tasks_trained: int = 0  # tasks the app finished
    tasks_reported: int = 0  # results the coordinator accepted
    tasks_refused: int = 0  # tasks this client declined, or results the coordinator refused
    reconnects: int = 0
    last_round: int = 0
    last_error: str = ""


class RefusedBy(enum.Enum):
    """Which side refused a task."""

    CLIENT = "client"  # not eligible, over the time limit, app error, or the app declined
    COORDINATOR = "coordinator"  # the result came late, twice, or was invalid


@dataclass(frozen=True, slots=True, kw_only=True)
class Selected:
    """The coordinator assigned a task to this client."""

    client_id: str
    round: int
    task_id: str
    kind: TaskKind
    time_left_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Trained:
    """The app finished a task locally; the result is about to be uploaded."""

    client_id: str
    round: int
    task_id: str
    kind: TaskKind
    num_examples: int
    metrics: Metrics = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reported:
    """The coordinator accepted the result."""

    client_id: str
    round: int
    task_id: str
    kind: TaskKind


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A task ended without an accepted result; `by` says which side refused and `reason` why."""

    client_id: str
    round: int
    task_id: str
    kind: TaskKind
    reason: str
    by: RefusedBy


RoundEvent = Selected | Trained | Reported | Refused
E = TypeVar("E", Selected, Trained, Reported, Refused)


@dataclass(frozen=True, slots=True, kw_only=True)
class Callbacks:
    """Optional functions called on round events (on the client's thread)."""

    on_selected: Callable[[Selected], None] | None = None
    on_trained: Callable[[Trained], None] | None = None
    on_reported: Callable[[Reported], None] | None = None
    on_refused: Callable[[Refused], None] | None = None

    def emit(self, event: RoundEvent) -> None:
        """Call the callback for `event`, logging (never raising) what it raises."""
        match event:
            case Selected():
                _call(self.on_selected, event)
            case Trained():
                _call(self.on_trained, event)
            case Reported():
                _call(self.on_reported, event)
            case Refused():
                _call(self.on_refused, event)


def _call(callback: Callable[[E], None] | None, event: E) -> None:
    if callback is None:
        return
    try:
        callback(event)
    except Exception:  # a host bug must not stop the client
        log.exception("%s callback raised; the client goes on", type(event).__name__)
