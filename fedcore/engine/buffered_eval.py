"""Federated evaluation during a buffered run, without I/O.

Every `eval_every` model versions, and at the last one, an evaluation of that version opens:
the next `eval_clients` clients that ask for work (and have no task out) are handed an
EVALUATE task on it instead of training, each client at most once per version, and never more
than the clients connected when it opened. Evaluation tasks do not take training slots. The
evaluation closes once that many results arrived, or at its deadline with what arrived;
the example-weighted mean of their metrics (loss, accuracy, anything else they report) is
attached to that version's server-step record. A task that expires or is declined hands its
place to the next client that asks, until the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedcore.aggregate.metrics import MetricsMean
from fedcore.protocol.params import Metrics


@dataclass(slots=True)
class _Open:
    version: int
    deadline: float
    wanted: int
    out: int = 0  # handed and not yet answered
    received: int = 0
    asked: set[str] = field(default_factory=set)  # clients handed a task of it
    metrics: MetricsMean = field(default_factory=MetricsMean)


@dataclass(frozen=True, slots=True)
class EvalResult:
    """A closed evaluation: the example-weighted mean of its clients' metrics."""

    version: int
    clients: int
    metrics: dict[str, float]


class Evaluations:
    """The open evaluations of a buffered run.

    Args:
        every: evaluate every this many versions (0: only the last; see `due`).
        clients: results each evaluation gathers.
        timeout_s: how long an evaluation stays open.
    """

    def __init__(self, every: int, clients: int, timeout_s: float) -> None:
        self.every, self.clients, self.timeout_s = every, clients, timeout_s
        self._open: dict[int, _Open] = {}

    def due(self, version: int, last: int) -> bool:
        """Whether `version` is evaluated: a multiple of `every`, or the last (when `every`)."""
        return self.every > 0 and self.clients > 0 and (
            version % self.every == 0 or version == last)

    def open(self, version: int, now: float, available: int | None = None) -> None:
        """Open the evaluation of `version`, among at most `available` clients (None: as many
        as `clients`)."""
        wanted = self.clients if available is None else max(1, min(self.clients, available))
        self._open[version] = _Open(version, now + self.timeout_s, wanted)

    @property
    def pending(self) -> frozenset[int]:
        """Versions whose evaluation is open."""
        return frozenset(self._open)

    def wanted(self) -> int:
        """Evaluation tasks still to hand out."""
        return sum(max(0, e.wanted - e.received - e.out) for e in self._open.values())

    def take(self, client_id: str) -> int | None:
        """The version a new evaluation task of `client_id` is for (the oldest that wants one
        and that it has not been asked to evaluate), or None."""
        for version in sorted(self._open):
            e = self._open[version]
            if e.received + e.out < e.wanted and client_id not in e.asked:
                e.out += 1
                e.asked.add(client_id)
                return version
        return None

    def give_back(self, version: int) -> None:
        """A task of `version` expired or was declined: its place is free again."""
        e = self._open.get(version)
        if e is not None:
            e.out -= 1

    def fold(self, version: int, metrics: Metrics, num_examples: int) -> None:
        """One client's evaluation of `version`."""
        e = self._open.get(version)
        if e is not None:
            e.out -= 1
            e.received += 1
            e.metrics.add(metrics, num_examples)

    def close_due(self, now: float) -> list[EvalResult]:
        """Close the evaluations that are complete or past their deadline."""
        done = [v for v, e in self._open.items() if e.received >= e.wanted or now >= e.deadline]
        closed = []
        for version in sorted(done):
            e = self._open.pop(version)
            closed.append(EvalResult(version, e.received, e.metrics.result()))
        return closed

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open evaluation."""
        return min((e.deadline for e in self._open.values()), default=None)

    def clear(self) -> None:
        """Forget every open evaluation."""
        self._open.clear()
