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
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.messages import MASKED_TENSOR, SecAggServerStep, SecAggSetup
from fedcore.params import Array
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError, Refusal, RoundAborted
from fedcore.secagg.messages import AdvertiseKeys, ClientMessage, MaskedInput, ServerMessage
from fedcore.secagg.packing import packed_size
from fedcore.secagg.quantize import Quantizer, split_weight
from fedcore.secagg.server import Phase as ServerPhase
from fedcore.secagg.server import SecAggServer
from fedcore.wire.tensor import ModelSpec, TensorSpec


class SecureRound:
    """Secure aggregation among `selected` clients for a model of layout `model_spec`."""

    def __init__(
        self,
        config: SecureAggregationConfig,
        *,
        selected: list[str],
        model_spec: ModelSpec,
        round_id: int,
        graph_seed: bytes,
        now: float,
        round_number: int = 1,
    ) -> None:
        self.config = config
        self.round_number = round_number
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
        dp = config.distributed_dp
        self.encoding = NoisyEncoding.for_round(dp, self.spec.config, self.spec.dim) if dp else None
        self.advertised: set[str] = set()
        self.outbox: dict[str, ServerMessage] = {}
        self.phase_deadline = now + config.phase_timeout_s

    # ---------------------------------------------------------------- queries
    @property
    def finished(self) -> bool:
        """Done or aborted."""
        return self.server.phase in (ServerPhase.DONE, ServerPhase.ABORTED)

    @property
    def masked_spec(self) -> ModelSpec:
        """The layout of a masked-input payload: the packed vector as bytes."""
        nbytes = packed_size(self.spec.dim, self.spec.config.bit_width)
        return ModelSpec(tensors=(TensorSpec(MASKED_TENSOR, np.dtype(np.uint8), (nbytes,)),))

    def next_step(self, client_id: str) -> SecAggServerStep | None:
        """What the client must do next: its setup (train, then advertise), a server message,
        or nothing for now."""
        if client_id not in self.advertised:
            if self.server.phase is ServerPhase.COLLECT_KEYS:
                return SecAggSetup(client=self.ids[client_id], spec=self.spec,
                                   weight_cap=self.config.weight_cap,
                                   distributed_dp=self.config.distributed_dp,
                                   participants=self.participants)
            return None
        return self.outbox.get(client_id)

    def expects_payload(self, msg: ClientMessage) -> bool:
        """Whether `msg` comes with the masked vector as payload."""
        return isinstance(msg, MaskedInput)

    # ---------------------------------------------------------------- events
    def accept(self, client_id: str, msg: ClientMessage, payload: bytes, now: float) -> None:
        """Take a client's protocol message; refusals raise `EngineError` and change nothing."""
        if msg.sender != self.ids[client_id]:
            raise EngineError(
                Reason.INVALID,
                f"{client_id!r} is client {self.ids[client_id]} of this round, not {msg.sender}",
            )
        if isinstance(msg, MaskedInput):
            msg = MaskedInput(sender=msg.sender, data=payload)
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

    def on_time(self, now: float, target: int) -> None:
        """Close the current phase at its deadline, or the key phase once `target` advertised."""
        if self.finished:
            return
        early = self.server.phase is ServerPhase.COLLECT_KEYS and len(self.advertised) >= target
        if early or now >= self.phase_deadline:
            before = self.server.phase
            self._deliver(self.server.end_phase(), before, now)

    def aggregate(self) -> AggregateResult:
        """The weighted mean update of the survivors, from the unmasked sum.

        Raises:
            RoundAborted: the protocol aborted (too few survivors at some phase).
        """
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
            measurements={"secagg_survivors": float(len(result.survivors))},
        )

    def _noisy_mean(self, total: np.ndarray, survivors: int) -> AggregateResult:
        """Distributed DP: the unweighted noisy mean of the survivors and its noise levels (ε is
        the engine's, from the run's accountant)."""
        assert self.encoding is not None
        measurements = {"secagg_survivors": float(survivors),
                        **self.encoding.measurements(survivors=survivors)}
        return AggregateResult(update=self._unflatten(self.encoding.decode_mean(total, survivors)),
                               count=survivors, total_weight=float(survivors),
                               measurements=measurements)

    def _unflatten(self, flat: np.ndarray) -> dict[str, Array]:
        update: dict[str, Array] = {}
        offset = 0
        for t in self.model_spec.tensors:
            update[t.name] = flat[offset : offset + t.size].reshape(t.shape).astype(t.dtype)
            offset += t.size
        return update

    def _deliver(self, replies: list[ServerMessage], before: ServerPhase, now: float) -> None:
        for reply in replies:
            self.outbox[self.names[reply.recipient]] = reply
        if self.server.phase is not before:
            self.phase_deadline = now + self.config.phase_timeout_s
