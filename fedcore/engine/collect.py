"""How an open task gathers what its clients send: one interface, plain and secure alike.

The engine asks a task's `Collector` what layout a result must have (`expected_spec`), hands
it each validated result (`accept`), asks whether it has all it will get (`settled`) and what
a client must do next (`next_step`), and at the close asks for the round's `aggregate`. The
plain collector folds each update into a streaming aggregator (memory O(model)); secure
aggregation (`fedcore.engine.secure_round.SecureRound`) implements the same interface, so the
engine has one path for both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.compression.codec import UPLOAD_BYTES, check_layout, decode_update, is_compressed
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.model import RoundModel
from fedcore.errors import FedcoreError
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader, SecAggServerStep, TaskKind, TaskResult
from fedcore.protocol.params import Array
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, check_matches
from fedcore.protocol.update import check_representable

MAX_EXAMPLES = 1 << 40


class RoundFailed(FedcoreError):
    """A task round closed without a usable aggregate; the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    """What a client is asked to do next: the task's kind and, in secure rounds, its message."""

    kind: TaskKind
    secagg: SecAggServerStep | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the engine books for an accepted result.

    Args:
        metrics_weight: the weight of the result's metrics in the round's mean (None: no metrics).
        complete: whether the client has now given everything it was asked for.
    """

    metrics_weight: float | None
    complete: bool


class Collector(Protocol):
    """One open task's way of gathering results; refusals raise `EngineError`, change nothing."""

    def expected_spec(self, task_id: str, header: ResultHeader) -> ModelSpec:
        """Check a (not declined) result's header; return the payload layout to expect."""
        ...

    def accept(self, client_id: str, result: TaskResult, now: float) -> Accepted:
        """Take a result whose tensors match `expected_spec`."""
        ...

    def next_step(self, client_id: str) -> Step | None:
        """What an open client must do now, or None while it has to wait."""
        ...

    def on_time(self, now: float) -> None:
        """Let time pass (inner deadlines)."""
        ...

    def drop(self, client_id: str, now: float) -> None:
        """The client declined or left: it sends nothing more, and nothing waits for it."""
        ...

    def settled(self, *, received: int, outstanding: int) -> bool:
        """Whether nothing more is worth waiting for (the round deadline aside), given how many
        clients completed and how many are still open."""
        ...

    def inner_deadline(self) -> float | None:
        """When `on_time` next acts on its own, if ever."""
        ...

    def progress(self) -> object:
        """Changes when an open client may have a new step."""
        ...

    def noise(self) -> NoisyEncoding | None:
        """The distributed-DP encoding clients add noise under, if any (the engine prices it)."""
        ...

    def aggregate(self) -> AggregateResult:
        """The round's result. Raises `RoundFailed` when there is none."""
        ...


class PlainCollector:
    """Plain results of a train, evaluate or initialize task, folded as they arrive."""

    def __init__(
        self,
        kind: TaskKind,
        *,
        model: RoundModel | None,
        aggregator: Aggregator | None,
        target: int,
        min_results: int,
        max_payload_bytes: int,
    ) -> None:
        self.kind = kind
        self._model = model
        self._aggregator = aggregator
        self._target = target
        self._min_results = min_results
        self._max_payload_bytes = max_payload_bytes
        self.received = 0
        self.upload_bytes = 0  # the accepted results' payloads
        self.initial: dict[str, Array] | None = None  # an INITIALIZE task's result

    def expected_spec(self, task_id: str, header: ResultHeader) -> ModelSpec:
        if header.secagg is not None:
            raise EngineError(Reason.INVALID, f"{task_id} does not use secure aggregation")
        if not 1 <= header.num_examples <= MAX_EXAMPLES:
            raise EngineError(Reason.INVALID, f"num_examples must be in 1..{MAX_EXAMPLES}")
        try:
            expected = self._spec_for(header.spec)
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result for {task_id} rejected: {err}") from err
        if expected.nbytes > self._max_payload_bytes:
            raise EngineError(
                Reason.TOO_LARGE,
                f"payload of {expected.nbytes} bytes exceeds max_payload_bytes "
                f"({self._max_payload_bytes})",
            )
        return expected

    def _spec_for(self, announced: ModelSpec) -> ModelSpec:
        match self.kind:
            case TaskKind.EVALUATE:
                check_matches(announced, EMPTY_SPEC)
                return EMPTY_SPEC
            case TaskKind.INITIALIZE:
                if not announced.tensors:
                    raise WireError("initial parameters must contain at least one tensor")
                return announced
        if self._model is None:
            raise WireError("this task has no model")
        if is_compressed(announced):  # decoded against the model's layout in `accept`
            check_layout(announced, self._model.spec)
            return announced
        check_matches(announced, self._model.spec)
        return self._model.spec

    def accept(self, client_id: str, result: TaskResult, now: float) -> Accepted:
        weight = float(result.header.num_examples)
        result = self._decoded(result)
        if self._aggregator is not None:
            self._check_representable(result.tensors)
            try:
                self._aggregator.add(result.tensors, weight)
            except ValueError as err:  # e.g. weight * value beyond float64: refused, unchanged
                raise EngineError(Reason.INVALID, f"result rejected: {err}") from err
        elif self.kind is TaskKind.INITIALIZE:
            self.initial = result.tensors
        self.upload_bytes += result.header.spec.nbytes
        self.received += 1
        return Accepted(metrics_weight=weight, complete=True)

    def _decoded(self, result: TaskResult) -> TaskResult:
        """A compressed update decoded to the model's layout (`fedcore.compression`); a
        malformed one is refused and changes nothing."""
        if self._model is None or not is_compressed(result.header.spec):
            return result
        try:
            tensors = decode_update(result.tensors, self._model.spec)
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result rejected: {err}") from err
        return dataclasses.replace(result, tensors=tensors)

    def _check_representable(self, tensors: dict[str, Array]) -> None:
        """Refuse an integer update whose implied local value leaves its dtype's range."""
        if self._model is None:
            return
        for name, value in tensors.items():
            try:
                check_representable(name, value, self._model.params[name])
            except WireError as err:
                raise EngineError(Reason.INVALID, f"result rejected: {err}") from err

    def next_step(self, client_id: str) -> Step | None:
        return Step(self.kind)

    def on_time(self, now: float) -> None:
        return None

    def drop(self, client_id: str, now: float) -> None:
        return None  # `settled` counts the clients still open

    def settled(self, *, received: int, outstanding: int) -> bool:
        return received >= self._target or outstanding == 0

    def inner_deadline(self) -> float | None:
        return None

    def progress(self) -> object:
        return None

    def noise(self) -> NoisyEncoding | None:
        return None

    def aggregate(self) -> AggregateResult:
        if self.received < self._min_results:
            raise RoundFailed(
                f"{self.received} results, {self._min_results} needed"
            )
        if self.initial is not None:  # an INITIALIZE task: its result is the model
            return AggregateResult(update=self.initial, count=self.received,
                                   total_weight=float(self.received))
        if self._aggregator is None:
            raise RoundFailed(f"a {self.kind.value} task has no aggregate")
        try:
            result = self._aggregator.result()
        except (ValueError, ArithmeticError) as err:  # e.g. Krum with fewer updates than its f
            raise RoundFailed(f"the round's updates could not be combined: {err}") from err
        return dataclasses.replace(result, measurements={
            **result.measurements, UPLOAD_BYTES: float(self.upload_bytes)})
