"""The server side of secure aggregation, as a state machine without I/O.

The server relays sealed shares it cannot read, folds masked vectors into one running sum
(memory O(dim), never O(clients x dim)), and in the unmasking phase asks each survivor for
the self-mask seed shares of survivors and the mask-key shares of dropped clients: two
disjoint sets, and it accepts no share it did not ask for, so it never holds both secrets
of any client. It aborts, keeping no partial result, when fewer than t clients remain in
any phase or a secret cannot be rebuilt.

In committed-graph rounds (signed, sparse graph) the server learns the graph only once every
client it took keys from has revealed its committed nonce (`fedcore.secagg.keys.graph_seed`);
it relays the commitments first, then the nonces, and aborts if any nonce is missing: it has
no way to choose the graph short of aborting the round.

The driver calls `handle` for every client message and `end_phase` when its deadline for
the current phase passes; a phase also ends by itself once every expected client answered.
The machine starts no threads or processes: the unmasking, nearly all its compute, runs
inline or through an executor the driver owns and passes in.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from fedcore.secagg import keys, recovery, shamir
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError, Refusal, RoundAborted, SecAggError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    GraphCommitment,
    GraphCommitments,
    GraphReveal,
    KeyList,
    MaskedInput,
    SealedShare,
    ServerMessage,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)
from fedcore.secagg.packing import unpack, word_dtype

_M = TypeVar("_M", bound=ClientMessage)
SEALED_BYTES = 2 * shamir.SHARE_BYTES + 16  # two shares and the GCM tag


class Phase(enum.Enum):
    """Which messages the server is collecting."""

    COLLECT_KEYS = enum.auto()
    COLLECT_REVEALS = enum.auto()  # committed-graph rounds only
    COLLECT_SHARES = enum.auto()
    COLLECT_MASKED = enum.auto()
    COLLECT_SIGNATURES = enum.auto()
    COLLECT_UNMASK = enum.auto()
    DONE = enum.auto()
    ABORTED = enum.auto()


TRANSITIONS: dict[Phase, frozenset[type[ClientMessage]]] = {
    Phase.COLLECT_KEYS: frozenset({AdvertiseKeys}),
    Phase.COLLECT_REVEALS: frozenset({GraphReveal}),
    Phase.COLLECT_SHARES: frozenset({EncryptedShares}),
    Phase.COLLECT_MASKED: frozenset({MaskedInput}),
    Phase.COLLECT_SIGNATURES: frozenset({ConsistencySignature}),
    Phase.COLLECT_UNMASK: frozenset({UnmaskShares}),
    Phase.DONE: frozenset(),
    Phase.ABORTED: frozenset(),
}


def _phase_over(message: type[ClientMessage], now: Phase) -> bool:
    """Whether the phase that collects `message` came before `now` (or the round ended)."""
    order = list(Phase)
    collected_in = next(p for p, kinds in TRANSITIONS.items() if message in kinds)
    return order.index(collected_in) < order.index(now)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SecAggResult:
    """The unmasked sum: `total[i]` = sum over `survivors` of their quantised input, mod 2**b."""

    total: npt.NDArray[np.unsignedinteger]
    survivors: tuple[int, ...]


class SecAggServer:
    """The server's part in one round.

    Args:
        spec: the round; the driver sends the same spec to every client.
        executor: runs the unmasking (rebuilding and subtracting masks, nearly all of the
            server's compute) in `jobs` pieces, e.g. a `ProcessPoolExecutor` the driver owns;
            None runs it inline. The result is the same bit for bit.
        jobs: pieces to split the unmasking into when there is an executor; default: one
            per CPU.
    """

    def __init__(
        self, spec: RoundSpec, *, executor: Executor | None = None, jobs: int | None = None
    ) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self._spec = spec
        self._executor = executor
        self._jobs = jobs or os.cpu_count() or 1
        self._graph = Graph(spec)  # committed-graph rounds: replaced once the nonces are in
        self._graph_seed = spec.graph_seed
        self._phase = Phase.COLLECT_KEYS
        self._expected: frozenset[int] = frozenset(spec.clients)
        self._answered: dict[int, ClientMessage | None] = {}
        self._adverts: dict[int, AdvertiseKeys] = {}
        self._key_lists: dict[int, frozenset[int]] = {}
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._acc: npt.NDArray[np.unsignedinteger] = np.zeros(0, word_dtype(spec.config.bit_width))
        self._requests: dict[int, UnmaskRequest] = {}
        self._result: SecAggResult | None = None
        self._abort_reason: str | None = None

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def pending(self) -> frozenset[int]:
        """Clients the current phase still waits for."""
        return self._expected - self._answered.keys()

    @property
    def abort_reason(self) -> str | None:
        """Why the round was aborted, or None."""
        return self._abort_reason

    def result(self) -> SecAggResult:
        """The unmasked sum.

        Raises:
            RoundAborted: when the round was aborted.
            ProtocolError: when the round is still running.
        """
        if self._abort_reason is not None:
            raise RoundAborted(self._abort_reason)
        if self._result is None:
            raise self._refuse("result", "the round is not finished")
        return self._result

    def _refuse(self, got: str, reason: str, kind: Refusal = Refusal.INVALID) -> ProtocolError:
        return ProtocolError(phase=self._phase.name, got=got, reason=reason, kind=kind)

    def handle(self, msg: ClientMessage) -> list[ServerMessage]:
        """Take one client message; return what to send when it completes the phase.

        Raises:
            ProtocolError: when the message is not legal now or not acceptable (wrong phase,
                unknown, dropped or repeated sender, malformed); the state is then unchanged.
        """
        name = type(msg).__name__
        if type(msg) not in TRANSITIONS[self._phase]:
            if _phase_over(type(msg), self._phase):  # a slow client's answer: late, not wrong
                raise self._refuse(name, "its phase is over", Refusal.NOT_IN_PHASE)
            raise self._refuse(name, "not expected in this phase")
        if msg.sender not in self._expected:
            raise self._refuse(name, f"client {msg.sender} is not part of this phase",
                               Refusal.NOT_IN_PHASE)
        if msg.sender in self._answered:
            raise self._refuse(name, f"client {msg.sender} already answered")
        try:
            self._accept(msg)
        except SecAggError as exc:
            raise self._refuse(name, str(exc)) from exc
        return self.end_phase() if not self.pending else []

    def end_phase(self) -> list[ServerMessage]:
        """Close the current phase with the clients that answered (the deadline passed).

        Raises:
            ProtocolError: when the round is already over.
        """
        closers: dict[Phase, Callable[[], list[ServerMessage]]] = {
            Phase.COLLECT_KEYS: self._close_keys,
            Phase.COLLECT_REVEALS: self._close_reveals,
            Phase.COLLECT_SHARES: self._close_shares,
            Phase.COLLECT_MASKED: self._close_masked,
            Phase.COLLECT_SIGNATURES: self._close_signatures,
            Phase.COLLECT_UNMASK: self._close_unmask,
        }
        if self._phase not in closers:
            raise self._refuse("end_phase", "the round is over")
        return closers[self._phase]()

    # accepting messages (validate everything, then record) ---------------------------

    def _accept(self, msg: ClientMessage) -> None:
        kept: ClientMessage | None = msg
        match msg:
            case AdvertiseKeys():
                self._check_advert(msg)
            case GraphReveal():
                self._check_reveal(msg)
            case EncryptedShares():
                self._check_shares(msg)
            case MaskedInput():
                words = unpack(msg.data, self._spec.config.bit_width, self._spec.dim)
                np.add(self._acc, words, out=self._acc)
                kept = None  # the running sum is all that is kept
            case ConsistencySignature():
                self._check_signature(msg)
            case UnmaskShares():
                self._check_unmask(msg)
        self._answered[msg.sender] = kept

    def _collected(self, kind: type[_M]) -> dict[int, _M]:
        return {c: m for c, m in self._answered.items() if isinstance(m, kind)}

    def _check_advert(self, msg: AdvertiseKeys) -> None:
        spec = self._spec
        keys.check_advertisement(msg, round_id=spec.round_id, identities=spec.identities)
        if bool(msg.graph_commitment) != spec.committed_graph:
            raise SecAggError("a graph commitment is due exactly in committed-graph rounds")

    def _check_reveal(self, msg: GraphReveal) -> None:
        commitment = self._adverts[msg.sender].graph_commitment
        opened = keys.graph_commitment(msg.nonce, round_id=self._spec.round_id, owner=msg.sender)
        if opened != commitment:
            raise SecAggError("the nonce does not open the sender's graph commitment")

    def _check_shares(self, msg: EncryptedShares) -> None:
        receivers = [sealed.receiver for sealed in msg.shares]
        if sorted(receivers) != sorted(self._key_lists[msg.sender] - {msg.sender}):
            raise SecAggError("shares must go to exactly the clients of the sender's key list")
        for sealed in msg.shares:
            if sealed.sender != msg.sender or len(sealed.ciphertext) != SEALED_BYTES:
                raise SecAggError("a sealed share is malformed")

    def _check_signature(self, msg: ConsistencySignature) -> None:
        identities = self._spec.identities or ()
        payload = keys.survivors_payload(round_id=self._spec.round_id,
                                         graph_seed=self._graph_seed, survivors=sorted(self._u3))
        if not keys.verify(identities[msg.sender - 1], msg.signature, payload):
            raise SecAggError("the survivor list is not signed by the sender")

    def _check_unmask(self, msg: UnmaskShares) -> None:
        request = self._requests[msg.sender]
        if tuple(s.owner for s in msg.seed_shares) != request.survivors:
            raise SecAggError("seed shares must be exactly those of the requested survivors")
        if tuple(s.owner for s in msg.key_shares) != request.dropped:
            raise SecAggError("key shares must be exactly those of the requested dropped clients")
        shamir.decode_shares([owned.share for owned in msg.seed_shares + msg.key_shares])

    # closing phases ---------------------------------------------------------------------

    def _abort(self, reason: str) -> list[ServerMessage]:
        self._phase = Phase.ABORTED
        self._abort_reason = reason
        self._acc = self._acc[:0]
        return []

    def _next_phase(self, phase: Phase, expected: frozenset[int]) -> None:
        self._phase, self._expected, self._answered = phase, expected, {}

    def _prune(self, clients: frozenset[int]) -> frozenset[int]:
        """Drop clients with fewer than t share holders left, until none is left to drop."""
        threshold, alive = self._spec.config.threshold, set(clients)
        changed = not self._graph.complete
        while changed:
            short = {c for c in alive if len(self._graph.holders(c) & alive) < threshold}
            alive -= short
            changed = bool(short)
        return frozenset(alive)

    def _too_few(self, clients: frozenset[int], what: str) -> str | None:
        threshold = self._spec.config.threshold
        if len(clients) < threshold:
            return f"only {len(clients)} clients {what}; the threshold is {threshold}"
        return None

    def _close_keys(self) -> list[ServerMessage]:
        if self._spec.committed_graph:
            return self._relay_commitments()
        return self._send_key_lists(frozenset(self._answered), self._collected(AdvertiseKeys), ())

    def _relay_commitments(self) -> list[ServerMessage]:
        adverts = self._collected(AdvertiseKeys)
        if reason := self._too_few(frozenset(adverts), "advertised keys"):
            return self._abort(reason)
        commitments = tuple(GraphCommitment(sender=c, commitment=adverts[c].graph_commitment)
                            for c in sorted(adverts))
        self._adverts = adverts
        self._next_phase(Phase.COLLECT_REVEALS, frozenset(adverts))
        return [GraphCommitments(recipient=c, commitments=commitments) for c in sorted(adverts)]

    def _close_reveals(self) -> list[ServerMessage]:
        if missing := sorted(self.pending):
            return self._abort(f"clients {missing[:10]} did not reveal their graph nonce; "
                               "the graph cannot be drawn without every committed nonce")
        reveals = tuple(r for _, r in sorted(self._collected(GraphReveal).items()))
        self._graph_seed = keys.graph_seed(round_id=self._spec.round_id,
                                           nonces=tuple((r.sender, r.nonce) for r in reveals))
        self._graph = Graph(self._spec, self._graph_seed)
        return self._send_key_lists(frozenset(self._adverts), self._adverts, reveals)

    def _send_key_lists(self, answered: frozenset[int], adverts: dict[int, AdvertiseKeys],
                        reveals: tuple[GraphReveal, ...]) -> list[ServerMessage]:
        u1 = self._prune(answered)
        if reason := self._too_few(u1, "advertised keys"):
            return self._abort(reason)
        self._adverts = {c: m for c, m in adverts.items() if c in u1}
        self._key_lists = {c: self._graph.holders(c) & u1 for c in u1}
        out: list[ServerMessage] = [
            KeyList(recipient=c, keys=tuple(self._adverts[p] for p in sorted(self._key_lists[c])),
                    reveals=reveals)
            for c in sorted(u1)
        ]
        self._next_phase(Phase.COLLECT_SHARES, u1)
        return out

    def _close_shares(self) -> list[ServerMessage]:
        u2 = self._prune(frozenset(self._answered))
        if reason := self._too_few(u2, "sent their shares"):
            return self._abort(reason)
        inbox: dict[int, list[SealedShare]] = {c: [] for c in u2}
        collected = self._collected(EncryptedShares)
        for sender in sorted(u2):
            for sealed in collected[sender].shares:
                if sealed.receiver in inbox:
                    inbox[sealed.receiver].append(sealed)
        self._u2 = u2
        self._acc = np.zeros(self._spec.dim, word_dtype(self._spec.config.bit_width))
        self._next_phase(Phase.COLLECT_MASKED, u2)
        return [ShareRelay(recipient=c, shares=tuple(inbox[c])) for c in sorted(u2)]

    def _close_masked(self) -> list[ServerMessage]:
        u3 = frozenset(self._answered)
        if reason := self._too_few(u3, "sent masked input"):
            return self._abort(reason)
        self._u3 = u3
        if not self._spec.signed:
            return self._request_unmask(u3, signatures={})
        survivors = tuple(sorted(u3))
        self._next_phase(Phase.COLLECT_SIGNATURES, u3)
        return [ConsistencyRequest(recipient=c, survivors=survivors) for c in survivors]

    def _close_signatures(self) -> list[ServerMessage]:
        u4 = frozenset(self._answered)
        if reason := self._too_few(u4, "signed the survivor list"):
            return self._abort(reason)
        threshold, graph = self._spec.config.threshold, self._graph
        owners = self._u3 | {d for d in self._u2 - self._u3 if graph.neighbours(d) & self._u3}
        unsigned = sorted(w for w in owners if len(graph.holders(w) & u4) < threshold)
        if unsigned:  # clients refuse to release their shares: no sum can be rebuilt
            return self._abort(f"clients {unsigned[:10]} have fewer than t={threshold} holders "
                               "that signed the survivor list")
        collected = self._collected(ConsistencySignature)
        return self._request_unmask(u4, signatures=collected)

    def _request_unmask(
        self, recipients: frozenset[int], *, signatures: dict[int, ConsistencySignature]
    ) -> list[ServerMessage]:
        dropped, threshold = self._u2 - self._u3, self._spec.config.threshold
        requests = {}
        for c in sorted(recipients):
            holders = self._graph.holders(c)
            survivors = tuple(sorted(self._u3 & holders))
            if len(survivors) < threshold:
                continue  # it would refuse: too few survivors around it to hide among
            gone = tuple(sorted(dropped & holders))
            relevant = set().union(*(self._graph.holders(w) for w in survivors + gone))
            requests[c] = UnmaskRequest(
                recipient=c,
                survivors=survivors,
                dropped=gone,
                signatures=tuple(signatures[s] for s in sorted(relevant & signatures.keys())),
            )
        if not requests:
            return self._abort(f"no survivor has t={threshold} surviving neighbours")
        self._requests = requests
        self._next_phase(Phase.COLLECT_UNMASK, frozenset(requests))
        return list(requests.values())

    def _close_unmask(self) -> list[ServerMessage]:
        seed_shares: dict[int, dict[int, bytes]] = {c: {} for c in self._u3}
        key_shares: dict[int, dict[int, bytes]] = {}
        for holder, msg in self._collected(UnmaskShares).items():
            for owned in msg.seed_shares:
                seed_shares[owned.owner][holder] = owned.share
            for owned in msg.key_shares:
                key_shares.setdefault(owned.owner, {})[holder] = owned.share
        needed = {d for d in self._u2 - self._u3 if self._graph.neighbours(d) & self._u3}
        for d in needed - key_shares.keys():
            key_shares[d] = {}
        try:
            self._unmask(seed_shares, key_shares)
        except SecAggError as exc:
            return self._abort(f"cannot unmask: {exc}")
        return []

    def _unmask(
        self, seed_shares: recovery.SharesByOwner, key_shares: recovery.SharesByOwner
    ) -> None:
        threshold, round_id = self._spec.config.threshold, self._spec.round_id
        seeds = recovery.reconstruct_all(seed_shares, threshold=threshold)
        recovery.check_seeds(seeds, self._adverts, round_id)
        dropped_keys = recovery.reconstruct_all(key_shares, threshold=threshold)
        recovery.check_mask_keys(dropped_keys, self._adverts)
        acc, bits = self._acc, self._spec.config.bit_width
        work = self._mask_work(seeds, dropped_keys)
        recovery.strip_all(acc, work, executor=self._executor, parts=self._jobs)
        if bits < acc.dtype.itemsize * 8:
            np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)
        self._result = SecAggResult(total=acc, survivors=tuple(sorted(self._u3)))
        self._phase = Phase.DONE

    def _mask_work(
        self, seeds: dict[int, bytes], dropped_keys: dict[int, bytes]
    ) -> recovery.MaskWork:
        """The masks on the sum: survivors' self masks and their pair masks with dropped clients."""
        pairs = tuple(
            recovery.DroppedPairs(
                dropped=d,
                private_key=dropped_keys[d],
                survivors=tuple(
                    (s, self._adverts[s].mask_pk)
                    for s in sorted(self._graph.neighbours(d) & self._u3)
                ),
            )
            for d in sorted(dropped_keys)
        )
        return recovery.MaskWork(
            round_id=self._spec.round_id,
            dim=self._spec.dim,
            dtype=self._acc.dtype.str,
            self_seeds=tuple(seeds[c] for c in sorted(seeds)),
            pairs=pairs,
        )
