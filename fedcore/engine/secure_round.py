"""The coordinator's side of one secure-aggregation round, around `SecAggServer`.

Maps the engine's client ids to the protocol's 1..n, keeps each client's next server message
until the client answers (a reconnecting client is sent it again), closes phases on their
deadlines, and turns the unmasked integer sum into the weighted mean update. The coordinator
never holds an individual update: only masked vectors and, at the end, their sum. With
distributed DP the sum carries the clients' noise; decoding and the guarantee are in
`fedcore.dp.secagg_noise`, and the engine prices each round's `encoding.step()` in the run's
persistent `fedcore.dp.distributed_accountant.DistributedAccountant`.
"""

from __future__ import annotations

import numpy as np

from fedcore.aggregate.base import AggregateResult
from fedcore.compression.codec import UPLOAD_BYTES
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.engine.collect import Accepted, RoundFailed, Step
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader, SecAggSetup, TaskKind, TaskResult
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError, Refusal, RoundAborted
from fedcore.secagg.messages import AdvertiseKeys, ClientMessage, ServerMessage
from fedcore.secagg.quantize import Quantizer, split_weight
from fedcore.secagg.server import Phase as ServerPhase
from fedcore.secagg.server import SecAggServer
from fedcore.wire.secagg import masked_payload_spec, with_payload


class SecureRound:
    """Secure aggregation among `selected` clients for a model of layout `model_spec`: the
    `fedcore.engine.collect.Collector` of a secure train task. The key phase closes early once
    `target` clients advertised keys."""

    def __init__(
        self,
        config: SecureAggregationConfig,
        *,
        selected: list[str],
        model_spec: ModelSpec,
        round_id: int,
        graph_seed: bytes,
        now: float,
        target: int | None = None,
    ) -> None:
        self.config = config
        self.target = len(selected) if target is None else target
        self.model_spec = model_spec
        self.ids = {cid: i + 1 for i, cid in enumerate(sorted(selected))}
        self.names = {i: cid for cid, i in self.ids.items()}
        self.spec = RoundSpec(
            config=config.for_round(len(selected)),
            round_id=round_id,
            num_clients=len(selected),
            dim=model_spec.num_elements + 1,  # the update, then the weight
            graph_seed=graph_seed,
            identities=tuple(config.roster.key_of(c) for c in sorted(selected))
            if config.roster is not None else None,
        )
        self.participants = tuple(sorted(selected)) if config.roster is not None else ()
        self.server = SecAggServer(self.spec)
        self.upload_bytes = 0
        dp = config.distributed_dp
        self.encoding = NoisyEncoding.for_round(dp, self.spec.config, self.spec.dim) if dp else None
        self.advertised: set[str] = set()
        self.dropped: set[int] = set()  # protocol ids of clients that declined or left
        self.outbox: dict[str, ServerMessage] = {}
        self.phase_deadline = now + config.phase_timeout_s

    # ---------------------------------------------------------------- queries
    @property
    def finished(self) -> bool:
        """Done or aborted."""
        return self.server.phase in (ServerPhase.DONE, ServerPhase.ABORTED)

    def next_step(self, client_id: str) -> Step | None:
        """What the client must do next: its setup (train, then advertise), a server message,
        or nothing for now."""
        if client_id not in self.advertised:
            if self.server.phase is ServerPhase.COLLECT_KEYS:
                return Step(TaskKind.TRAIN, SecAggSetup(
                    client=self.ids[client_id], spec=self.spec, weight_cap=self.config.weight_cap,
                    distributed_dp=self.config.distributed_dp, participants=self.participants))
            return None
        message = self.outbox.get(client_id)
        return Step(TaskKind.SECAGG, message) if message is not None else None

    def expected_spec(self, task_id: str, header: ResultHeader) -> ModelSpec:
        """The masked vector's layout for a `MaskedInput`, no payload for other messages."""
        if header.secagg is None:
            raise EngineError(Reason.INVALID, f"{task_id} uses secure aggregation: send its messages")
        return masked_payload_spec(header.secagg, dim=self.spec.dim,
                                   bit_width=self.spec.config.bit_width)

    def settled(self, *, received: int, outstanding: int) -> bool:
        """Done or aborted (a phase ends early once only dropped clients are pending: `drop`)."""
        return self.finished

    def inner_deadline(self) -> float | None:
        """The current protocol phase's deadline, while the protocol runs."""
        return None if self.finished else self.phase_deadline

    def progress(self) -> object:
        """The protocol phase: a new one brings clients new steps."""
        return self.server.phase

    def noise(self) -> NoisyEncoding | None:
        """The distributed-DP encoding of this round, if any."""
        return self.encoding

    # ---------------------------------------------------------------- events
    def accept(self, client_id: str, result: TaskResult, now: float) -> Accepted:
        """Take a client's protocol message (its payload, for a `MaskedInput`, the masked vector);
        refusals raise `EngineError` and change nothing. Keys are advertised after training, so
        an `AdvertiseKeys` carries the client's metrics."""
        msg = result.header.secagg
        if msg is None:
            raise EngineError(Reason.INVALID, "a secure-aggregation result carries no message")
        try:
            msg = with_payload(msg, result.tensors)
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result rejected: {err}") from err
        self._handle(client_id, msg, now)
        self.upload_bytes += result.header.spec.nbytes  # the masked vectors' payloads
        return Accepted(metrics_weight=1.0 if isinstance(msg, AdvertiseKeys) else None,
                        complete=False)

    def _handle(self, client_id: str, msg: ClientMessage, now: float) -> None:
        if msg.sender != self.ids[client_id]:
            raise EngineError(
                Reason.INVALID,
                f"{client_id!r} is client {self.ids[client_id]} of this round, not {msg.sender}",
            )
        before = self.server.phase
        try:
            replies = self.server.handle(msg)
        except ProtocolError as err:
            reason = Reason.LATE if err.kind is Refusal.NOT_IN_PHASE else Reason.INVALID
            raise EngineError(reason, f"secure aggregation refused {type(msg).__name__}: {err}"
                              ) from err
        if isinstance(msg, AdvertiseKeys):
            self.advertised.add(client_id)
        self.outbox.pop(client_id, None)
        self._deliver(replies, before, now)
        self._close_if_only_dropped(now)

    def drop(self, client_id: str, now: float) -> None:
        """The client declined or left: it counts as dropped at once, in whatever phase (the
        phase closes now if it waits for dropped clients only, not at its deadline)."""
        if client_id not in self.ids or self.finished:
            return
        self.dropped.add(self.ids[client_id])
        self.outbox.pop(client_id, None)
        self._close_if_only_dropped(now)

    def on_time(self, now: float) -> None:
        """Close the current phase at its deadline, or the key phase once `target` advertised."""
        if self.finished:
            return
        early = self.server.phase is ServerPhase.COLLECT_KEYS and len(self.advertised) >= self.target
        if early or now >= self.phase_deadline:
            before = self.server.phase
            self._deliver(self.server.end_phase(), before, now)
        self._close_if_only_dropped(now)

    def _close_if_only_dropped(self, now: float) -> None:
        """End phases whose pending clients all dropped (each end moves to a later phase)."""
        while not self.finished and self.server.pending <= self.dropped:
            before = self.server.phase
            self._deliver(self.server.end_phase(), before, now)

    def aggregate(self) -> AggregateResult:
        """The weighted mean update of the survivors, from the unmasked sum.

        Raises:
            RoundFailed: the protocol did not finish by the round deadline or aborted (too few
                survivors at some phase).
        """
        if not self.finished:
            raise RoundFailed("secure aggregation did not finish by the round deadline")
        try:
            return self._mean()
        except (RoundAborted, ProtocolError) as err:
            raise RoundFailed(f"secure aggregation aborted: {err}") from err

    def _mean(self) -> AggregateResult:
        result = self.server.result()
        if self.encoding is not None:
            return self._noisy_mean(result.total, len(result.survivors))
        quantizer = Quantizer.from_config(self.spec.config)
        total = quantizer.dequantize_sum(result.total, len(result.survivors))
        weighted_sum, weight = split_weight(total, clip=self.spec.config.clip)
        if not weight > 0:
            raise RoundAborted("the survivors' weights sum to zero")
        mean = weighted_sum / weight
        return AggregateResult(
            update=self._unflatten(mean),
            count=len(result.survivors),
            total_weight=weight,
            measurements={"secagg_survivors": float(len(result.survivors)),
                          UPLOAD_BYTES: float(self.upload_bytes)},
        )

    def _noisy_mean(self, total: np.ndarray, survivors: int) -> AggregateResult:
        """Distributed DP: the unweighted noisy mean of the survivors and its noise levels (ε is
        the engine's, from the run's accountant)."""
        assert self.encoding is not None
        measurements = {"secagg_survivors": float(survivors),
                        UPLOAD_BYTES: float(self.upload_bytes),
                        **self.encoding.measurements(survivors=survivors)}
        return AggregateResult(update=self._unflatten(self.encoding.decode_mean(total, survivors)),
                               count=survivors, total_weight=float(survivors),
                               measurements=measurements)

    def _unflatten(self, flat: np.ndarray) -> dict[str, Array]:
        update: dict[str, Array] = {}
        offset = 0
        for t in self.model_spec.tensors:
            update[t.name] = flat[offset : offset + t.size].reshape(t.shape)  # float64, as 5.3
            offset += t.size
        return update

    def _deliver(self, replies: list[ServerMessage], before: ServerPhase, now: float) -> None:
        for reply in replies:
            self.outbox[self.names[reply.recipient]] = reply
        if self.server.phase is not before:
            self.phase_deadline = now + self.config.phase_timeout_s
