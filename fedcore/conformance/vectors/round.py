"""Whole secure rounds: every message between the server and the clients, in order.

A round runs the reference machines (`SecAggClient`, `SecAggServer`) in memory, as the
coordinator would through gRPC: the clients' key material comes from recorded `drbg` streams
and their rounding from given uniforms, so every message is reproducible. Each message is
given field by field (hex bytes) and as its protobuf encoding (`fedcore.v1.SecAggServerMessage`
or `SecAggClientMessage`; a masked input's vector is the result payload, given separately).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.conformance.vectors.drbg import Stream, take
from fedcore.conformance.vectors.encoding import quantize_case
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.messages import SecAggSetup
from fedcore.secagg import keys
from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ClientMessage,
    ConsistencySignature,
    EncryptedShares,
    GraphReveal,
    MaskedInput,
    ServerMessage,
    UnmaskShares,
)
from fedcore.secagg.quantize import Quantizer, append_weight, split_weight
from fedcore.secagg.server import Phase as ServerPhase
from fedcore.secagg.server import SecAggServer
from fedcore.wire.secagg import client_message_to_proto, server_step_to_proto

Group = dict[str, Any]
WEIGHT_CAP = 100.0


def _fields(msg: object) -> Any:
    """A message as JSON: bytes in hex, tuples as lists, nested messages as objects."""
    if isinstance(msg, bytes):
        return msg.hex()
    if isinstance(msg, tuple):
        return [_fields(item) for item in msg]
    if is_dataclass(msg) and not isinstance(msg, type):
        return {f.name: _fields(getattr(msg, f.name)) for f in fields(msg)}
    return msg


@dataclass(kw_only=True)
class RoundPlan:
    """One scripted round.

    Args:
        name: the vector's name.
        config: the protocol configuration.
        num_clients: n.
        signed: whether clients have identities (participants named "client-<id>").
        drops: client -> the message types it never sends (it vanishes at the first).
        round_id: the round id.
        distributed_dp: clients encode with distributed-DP noise instead of weights.
    """

    name: str
    config: SecAggConfig
    num_clients: int
    signed: bool = False
    drops: dict[int, tuple[type[ClientMessage], ...]] = field(default_factory=dict)
    round_id: int = 11
    distributed_dp: DistributedDPConfig | None = None


class _Recorder:
    """Runs a plan and keeps the transcript."""

    def __init__(self, plan: RoundPlan) -> None:
        self.plan = plan
        n = plan.num_clients
        self.dim = 4  # three update values, then the weight
        self.identities = {c: Ed25519PrivateKey.from_private_bytes(
            take(f"{plan.name}/identity/{c}", 32)) for c in range(1, n + 1)} if plan.signed else {}
        public = tuple(k.public_key().public_bytes_raw() for _, k in sorted(self.identities.items()))
        self.spec = RoundSpec(config=plan.config, round_id=plan.round_id, num_clients=n,
                              dim=self.dim, graph_seed=take(f"{plan.name}/graph-seed", 32),
                              identities=public or None)
        self.sources = {c: Stream(f"{plan.name}/client/{c}") for c in self.spec.clients}
        self.clients = {c: SecAggClient(self.spec, c, identity_key=self.identities.get(c),
                                        random_bytes=self.sources[c]) for c in self.spec.clients}
        self.server = SecAggServer(self.spec)
        self.alive = set(self.spec.clients)
        self.transcript: list[dict[str, Any]] = []
        self.inputs: dict[int, dict[str, Any]] = {}
        self.words: dict[int, np.ndarray] = {}
        self.sealed: dict[int, EncryptedShares] = {}
        self.reveals: list[tuple[int, bytes]] = []
        self._encode_inputs()

    def _encode_inputs(self) -> None:
        quantizer = Quantizer.from_config(self.spec.config)
        dp = self.plan.distributed_dp
        self.encoding = NoisyEncoding.for_round(dp, self.spec.config, self.dim) if dp else None
        for c in self.spec.clients:
            update = np.array([0.25 * c, -0.1 * c, 0.5 - 0.3 * c])
            if self.encoding is not None:
                self.inputs[c] = self._noisy_input(self.encoding, c, update)
                self.words[c] = np.array(self.inputs[c]["words"], dtype=np.uint64)
                continue
            num_examples = 20 * c + 3
            weight = min(num_examples / WEIGHT_CAP, 1.0)
            vector = append_weight(update * weight, weight, clip=self.spec.config.clip)
            case = {"update": update.tolist(), "num_examples": num_examples, "weight": weight}
            case.update(quantize_case(quantizer, vector, seed=100 * self.spec.round_id + c))
            self.inputs[c] = case
            self.words[c] = np.array(case["words"], dtype=np.uint64)

    def _noisy_input(self, encoding: NoisyEncoding, c: int, update: np.ndarray) -> dict[str, Any]:
        """A client's distributed-DP words and the numpy draws behind them."""
        seed = 100 * self.spec.round_id + c
        rng = np.random.default_rng(seed)
        uniforms = rng.random(self.dim)
        noise = encoding.sample_noise(rng)
        words = encoding.encode(update, np.random.default_rng(seed))
        norm, bound = float(np.linalg.norm(update)), encoding.config.clip_norm
        clipped = update * (bound / norm * (1 - 1e-9)) if norm > bound else update
        return {"update": update.tolist(), "clipped": clipped.tolist(), "numpy_seed": seed,
                "uniforms": uniforms.tolist(), "noise": [int(n) for n in noise],
                "words": [int(w) for w in words]}

    def record(self, direction: str, party: int, msg: object, proto: bytes) -> None:
        entry = {"direction": direction, "client": party, "type": type(msg).__name__,
                 "fields": _fields(msg), "proto": proto.hex()}
        if isinstance(msg, MaskedInput):
            entry["payload"] = msg.data.hex()
            entry["fields"]["data"] = "(the payload)"
        self.transcript.append(entry)

    def event(self, text: str, **details: Any) -> None:
        self.transcript.append({"direction": "event", "type": text, **details})

    def to_server(self, msg: ClientMessage) -> list[ServerMessage]:
        if type(msg) in self.plan.drops.get(msg.sender, ()):
            self.alive.discard(msg.sender)
            self.event("drop", client=msg.sender, instead_of=type(msg).__name__)
            return []
        self.record("client->server", msg.sender, msg,
                    client_message_to_proto(msg).SerializeToString())
        if isinstance(msg, EncryptedShares):
            self.sealed[msg.sender] = msg
        if isinstance(msg, GraphReveal):
            self.reveals.append((msg.sender, msg.nonce))
        return self.server.handle(msg)

    def to_client(self, msg: ServerMessage) -> list[ClientMessage]:
        c = msg.recipient
        self.record("server->client", c, msg, server_step_to_proto(msg).SerializeToString())
        replies = self.clients[c].handle(msg)
        if self.clients[c].phase is ClientPhase.MASK:
            replies.append(self.clients[c].mask_input(self.words[c]))
        return replies

    def run(self) -> None:
        participants = tuple(f"client-{c}" for c in self.spec.clients) if self.plan.signed else ()
        for c in self.spec.clients:
            setup = SecAggSetup(client=c, spec=self.spec, weight_cap=WEIGHT_CAP,
                                distributed_dp=self.plan.distributed_dp,
                                participants=participants)
            self.transcript.append({
                "direction": "server->client", "client": c, "type": "SecAggSetup",
                "fields": {"client": c, "participants": list(participants)},
                "proto": server_step_to_proto(setup).SerializeToString().hex()})
        outbound: list[ServerMessage] = []
        for c in sorted(self.alive):
            outbound += self.to_server(self.clients[c].advertise_keys())
        while self.server.phase not in (ServerPhase.DONE, ServerPhase.ABORTED):
            if not outbound:
                self.event("end_phase", phase=self.server.phase.name,
                           missing=sorted(self.server.pending))
                outbound = self.server.end_phase()
                continue
            replies: list[ClientMessage] = []
            for msg in outbound:
                replies += self.to_client(msg)
            outbound = []
            for reply in replies:
                outbound += self.to_server(reply)

    def derived(self) -> dict[str, Any]:
        """Each client's drawn key material and the pairwise values it implies."""
        out: dict[str, Any] = {}
        draws = {c: self.sources[c].draws for c in self.spec.clients}
        for c in self.spec.clients:
            cipher_sk, mask_sk, seed = draws[c][0], draws[c][1], draws[c][2]
            nonce = draws[c][3] if self.spec.committed_graph else b""
            entry: dict[str, Any] = {
                "random_draws": [d.hex() for d in draws[c]],
                "cipher_sk": cipher_sk.hex(), "mask_sk": mask_sk.hex(), "self_seed": seed.hex(),
                "graph_nonce": nonce.hex(),
            }
            if self.plan.signed:
                entry["identity_private"] = take(f"{self.plan.name}/identity/{c}", 32).hex()
            pairs = {}
            for d in sorted(self.graph().neighbours(c)) if self.graph_known() else ():
                d_cipher = keys.public_bytes(X25519PrivateKey.from_private_bytes(draws[d][0]))
                d_mask = keys.public_bytes(X25519PrivateKey.from_private_bytes(draws[d][1]))
                share_shared = keys.agree(X25519PrivateKey.from_private_bytes(cipher_sk), d_cipher)
                mask_shared = keys.agree(X25519PrivateKey.from_private_bytes(mask_sk), d_mask)
                rid = self.spec.round_id
                pairs[str(d)] = {
                    "share_key": keys.derive_share_key(share_shared, round_id=rid, a=c, b=d).hex(),
                    "mask_seed": keys.derive_mask_seed(mask_shared, round_id=rid, a=c, b=d).hex(),
                }
            entry["pairs"] = pairs
            entry["share_plaintexts"] = self.plaintexts(c, pairs)
            out[str(c)] = entry
        return out

    def graph_known(self) -> bool:
        """Whether the round got as far as drawing its graph (committed rounds: every reveal)."""
        return not self.spec.committed_graph or any(
            e["type"] == "KeyList" for e in self.transcript)

    def graph(self) -> Graph:
        """The round's neighbour relation."""
        return Graph(self.spec, self.graph_seed())

    def graph_seed(self) -> bytes:
        """The seed the graph is drawn from: the setup's, or the committed nonces' digest."""
        if not self.spec.committed_graph:
            return self.spec.graph_seed
        return keys.graph_seed(round_id=self.spec.round_id, nonces=self.reveals)

    def plaintexts(self, c: int, pairs: dict[str, Any]) -> dict[str, str]:
        """The share plaintexts client c sealed, by receiver (opened with the pair's key)."""
        sent = self.sealed.get(c)
        if sent is None:
            return {}
        return {str(s.receiver): keys.decrypt_share(
            bytes.fromhex(pairs[str(s.receiver)]["share_key"]), s.ciphertext,
            round_id=self.spec.round_id, graph_seed=self.graph_seed(), sender=c,
            receiver=s.receiver).hex() for s in sent.shares}

    def outcome(self) -> dict[str, Any]:
        """The unmasked sum and mean, or why the round aborted."""
        if self.server.abort_reason is not None:
            return {"aborted": self.server.abort_reason}
        result = self.server.result()
        if self.encoding is not None:
            mean = self.encoding.decode_mean(result.total, len(result.survivors))
            return {"survivors": list(result.survivors), "total": [int(v) for v in result.total],
                    "mean_update": mean.tolist()}
        quantizer = Quantizer.from_config(self.spec.config)
        total = quantizer.dequantize_sum(result.total, len(result.survivors))
        weighted, weight = split_weight(total, clip=self.spec.config.clip)
        return {"survivors": list(result.survivors), "total": [int(v) for v in result.total],
                "weighted_sum": weighted.tolist(), "total_weight": weight,
                "mean_update": (weighted / weight).tolist()}

    def summary(self) -> Group:
        config = self.spec.config
        return {
            "description": self.describe(),
            "setup": {"round_id": self.spec.round_id, "num_clients": self.spec.num_clients,
                      "threshold": config.threshold, "max_clients": config.max_clients,
                      "clip": config.clip, "bit_width": config.bit_width,
                      "mode": config.mode.name, "degree": config.degree, "dim": self.dim,
                      "graph_seed": self.spec.graph_seed.hex(), "weight_cap": WEIGHT_CAP,
                      "levels": config.levels,
                      "distributed_dp": None if self.encoding is None else {
                          "noise_multiplier": self.encoding.config.noise_multiplier,
                          "clip_norm": self.encoding.config.clip_norm,
                          "kind": self.encoding.config.kind.value,
                          "delta": self.encoding.config.delta,
                          "levels": self.encoding.quantizer.levels,
                          "offset": self.encoding.offset,
                          "client_variance": self.encoding.noise.client_variance},
                      "identities": [k.hex() for k in self.spec.identities or ()],
                      "participants": [f"client-{c}" for c in self.spec.clients]
                      if self.plan.signed else []},
            "graph_seed_used": self.graph_seed().hex() if self.graph_known() else None,
            "neighbours": {str(c): sorted(self.graph().neighbours(c)) for c in self.spec.clients}
            if self.graph_known() else None,
            "inputs": {str(c): v for c, v in self.inputs.items()},
            "clients": self.derived(),
            "transcript": self.transcript,
            "result": self.outcome(),
        }

    def describe(self) -> str:
        drops = ", ".join(f"client {c} vanishes instead of sending {t[0].__name__}"
                          for c, t in sorted(self.plan.drops.items()))
        kind = "signed" if self.plan.signed else "unsigned"
        graph = ("committed-graph " if self.spec.committed_graph else "")
        dp = (" with distributed DP (inputs: numpy_seed draws the uniforms, then the noise; "
              "words = quantized + noise + offset, docs/protocol.md 8.10)"
              if self.encoding is not None else "")
        article = "An" if kind == "unsigned" else "A"
        return (f"{article} {kind} {graph}{self.spec.config.mode.name} round{dp} of "
                f"{self.spec.num_clients} clients, threshold {self.spec.config.threshold}; "
                f"{drops or 'no dropouts'}. transcript lists every message in the order the "
                "reference machines exchange them; entries with direction 'event' mark a "
                "dropout (type drop: the client vanishes instead of sending instead_of) and a "
                "phase deadline (type end_phase: the server closes the phase without missing).")


def plans() -> list[RoundPlan]:
    """The scripted rounds: dropouts at every phase (advertisement, shares, masked input,
    consistency check, unmasking) and a committed-graph round that aborts on a missing reveal."""
    full = SecAggConfig(threshold=3, max_clients=8, clip=1.0, bit_width=24)
    full_dp = SecAggConfig(threshold=3, max_clients=8, clip=1.0, bit_width=32)
    sparse = SecAggConfig(threshold=4, max_clients=8, clip=1.0, bit_width=32,
                          mode=Mode.SECAGG_PLUS, degree=4)
    return [
        RoundPlan(name="unsigned-full-4", config=full, num_clients=4,
                  drops={4: (MaskedInput,)}),
        RoundPlan(name="signed-full-4", config=full, num_clients=4, signed=True,
                  drops={2: (AdvertiseKeys,)}, round_id=12),
        RoundPlan(name="signed-committed-graph-7", num_clients=7, signed=True, config=sparse,
                  drops={3: (ConsistencySignature,)}, round_id=13),
        RoundPlan(name="unsigned-secaggplus-6", num_clients=6, round_id=14,
                  config=SecAggConfig(threshold=3, max_clients=6, clip=0.5, bit_width=20,
                                      mode=Mode.SECAGG_PLUS, degree=4),
                  drops={2: (EncryptedShares,), 5: (UnmaskShares,)}),
        RoundPlan(name="unsigned-full-4-distributed-dp", config=full_dp, num_clients=4,
                  round_id=16, drops={2: (MaskedInput,)},
                  distributed_dp=DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0)),
        RoundPlan(name="signed-committed-graph-7-abort", num_clients=7, signed=True,
                  config=sparse, drops={6: (GraphReveal,)}, round_id=15),
    ]


def rounds_group() -> Group:
    """Every scripted round, by name."""
    out: Group = {}
    for plan in plans():
        recorder = _Recorder(plan)
        recorder.run()
        out[plan.name] = recorder.summary()
    return out
