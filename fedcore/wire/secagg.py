"""Secure-aggregation messages <-> protobuf. `*_from_proto` validates and raises `WireError`.

A `MaskedInput` crosses the wire as a header (`MaskedInputHeader`) plus the packed vector as
the result's payload, one uint8 tensor named `MASKED_TENSOR`: `client_payload` splits a message
into the two, `masked_payload_spec` is the payload's layout, and `with_payload` joins a message
decoded from its header (`client_message_from_proto`, empty `data`) with its payload again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from fedcore.proto.v1 import secagg_pb2 as spb
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import MASKED_TENSOR, SecAggServerStep, SecAggSetup
from fedcore.protocol.params import Array
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, TensorSpec
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
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
    OwnedShare,
    SealedShare,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)
from fedcore.secagg.packing import packed_size

MAX_ITEMS = 100_000
_MODES = {Mode.FULL: spb.FULL, Mode.SECAGG_PLUS: spb.SECAGG_PLUS}
_MODES_BACK = {code: mode for mode, code in _MODES.items()}
_NOISES = {IntegerNoise.SKELLAM: spb.INTEGER_NOISE_SKELLAM,
           IntegerNoise.DISCRETE_GAUSSIAN: spb.INTEGER_NOISE_DISCRETE_GAUSSIAN}
_NOISES_BACK = {code: kind for kind, code in _NOISES.items()}


def server_step_to_proto(step: SecAggServerStep) -> spb.SecAggServerMessage:
    match step:
        case SecAggSetup():
            spec, cfg = step.spec, step.spec.config
            return spb.SecAggServerMessage(setup=spb.SecAggSetup(
                client=step.client, num_clients=spec.num_clients, threshold=cfg.threshold,
                max_clients=cfg.max_clients, clip=cfg.clip, bit_width=cfg.bit_width,
                mode=_MODES[cfg.mode], degree=cfg.degree, graph_seed=spec.graph_seed,
                round_id=spec.round_id, dim=spec.dim, weight_cap=step.weight_cap,
                distributed_dp=_dp_to_proto(step.distributed_dp),
                participants=list(step.participants),
            ))
        case GraphCommitments():
            return spb.SecAggServerMessage(graph_commitments=spb.GraphCommitments(
                recipient=step.recipient,
                commitments=[spb.GraphCommitment(sender=c.sender, commitment=c.commitment)
                             for c in step.commitments]))
        case KeyList():
            return spb.SecAggServerMessage(key_list=spb.KeyList(
                recipient=step.recipient, keys=[_advert_to_proto(k) for k in step.keys],
                reveals=[_reveal_to_proto(r) for r in step.reveals]))
        case ShareRelay():
            return spb.SecAggServerMessage(share_relay=spb.ShareRelay(
                recipient=step.recipient, shares=[_sealed_to_proto(s) for s in step.shares]))
        case ConsistencyRequest():
            return spb.SecAggServerMessage(consistency_request=spb.ConsistencyRequest(
                recipient=step.recipient, survivors=list(step.survivors)))
        case UnmaskRequest():
            return spb.SecAggServerMessage(unmask_request=spb.UnmaskRequest(
                recipient=step.recipient, survivors=list(step.survivors),
                dropped=list(step.dropped),
                signatures=[spb.ConsistencySignature(sender=s.sender, signature=s.signature)
                            for s in step.signatures],
            ))
    raise TypeError(f"not a secure-aggregation server step: {type(step).__name__}")


def server_step_from_proto(msg: spb.SecAggServerMessage) -> SecAggServerStep:
    try:
        match msg.WhichOneof("msg"):
            case "setup":
                s = msg.setup
                if s.mode not in _MODES_BACK:
                    raise WireError(f"unknown secure-aggregation mode {s.mode}")
                config = SecAggConfig(
                    threshold=s.threshold, max_clients=s.max_clients, clip=s.clip,
                    bit_width=s.bit_width, mode=_MODES_BACK[s.mode], degree=s.degree,
                )
                spec = RoundSpec(config=config, round_id=s.round_id, num_clients=s.num_clients,
                                 dim=s.dim, graph_seed=s.graph_seed)
                dp = _dp_from_proto(s.distributed_dp) if s.HasField("distributed_dp") else None
                return SecAggSetup(client=s.client, spec=spec, weight_cap=s.weight_cap,
                                   distributed_dp=dp,
                                   participants=tuple(_bounded(s.participants)))
            case "graph_commitments":
                g = msg.graph_commitments
                return GraphCommitments(
                    recipient=g.recipient,
                    commitments=tuple(GraphCommitment(sender=c.sender, commitment=c.commitment)
                                      for c in _bounded(g.commitments)))
            case "key_list":
                k = msg.key_list
                return KeyList(recipient=k.recipient,
                               keys=tuple(_advert_from_proto(a) for a in _bounded(k.keys)),
                               reveals=tuple(_reveal_from_proto(r) for r in _bounded(k.reveals)))
            case "share_relay":
                return ShareRelay(recipient=msg.share_relay.recipient,
                                  shares=_sealed_from_proto(msg.share_relay.shares))
            case "consistency_request":
                r = msg.consistency_request
                return ConsistencyRequest(recipient=r.recipient, survivors=_ids(r.survivors))
            case "unmask_request":
                u = msg.unmask_request
                return UnmaskRequest(
                    recipient=u.recipient, survivors=_ids(u.survivors), dropped=_ids(u.dropped),
                    signatures=tuple(ConsistencySignature(sender=s.sender, signature=s.signature)
                                     for s in _bounded(u.signatures)),
                )
    except ValueError as err:
        raise WireError(f"bad secure-aggregation message: {err}") from err
    raise WireError("secure-aggregation step carries no message")


def _dp_to_proto(dp: DistributedDPConfig | None) -> spb.DistributedDP | None:
    if dp is None:
        return None
    return spb.DistributedDP(noise_multiplier=dp.noise_multiplier, clip_norm=dp.clip_norm,
                             kind=_NOISES[dp.kind], delta=dp.delta)


def _dp_from_proto(dp: spb.DistributedDP) -> DistributedDPConfig:
    if dp.kind not in _NOISES_BACK:
        raise WireError(f"unknown integer noise {dp.kind}")
    return DistributedDPConfig(noise_multiplier=dp.noise_multiplier, clip_norm=dp.clip_norm,
                               kind=_NOISES_BACK[dp.kind], delta=dp.delta)


def client_message_to_proto(msg: ClientMessage) -> spb.SecAggClientMessage:
    match msg:
        case AdvertiseKeys():
            return spb.SecAggClientMessage(advertise_keys=_advert_to_proto(msg))
        case GraphReveal():
            return spb.SecAggClientMessage(graph_reveal=_reveal_to_proto(msg))
        case EncryptedShares():
            return spb.SecAggClientMessage(encrypted_shares=spb.EncryptedShares(
                sender=msg.sender, shares=[_sealed_to_proto(s) for s in msg.shares]))
        case MaskedInput():
            return spb.SecAggClientMessage(masked_input=spb.MaskedInputHeader(sender=msg.sender))
        case ConsistencySignature():
            return spb.SecAggClientMessage(consistency_signature=spb.ConsistencySignature(
                sender=msg.sender, signature=msg.signature))
        case UnmaskShares():
            return spb.SecAggClientMessage(unmask_shares=spb.UnmaskShares(
                sender=msg.sender,
                seed_shares=[spb.OwnedShare(owner=s.owner, share=s.share) for s in msg.seed_shares],
                key_shares=[spb.OwnedShare(owner=s.owner, share=s.share) for s in msg.key_shares],
            ))
    raise TypeError(f"not a secure-aggregation client message: {type(msg).__name__}")


def client_message_from_proto(msg: spb.SecAggClientMessage) -> ClientMessage:
    match msg.WhichOneof("msg"):
        case "advertise_keys":
            return _advert_from_proto(msg.advertise_keys)
        case "graph_reveal":
            return _reveal_from_proto(msg.graph_reveal)
        case "encrypted_shares":
            e = msg.encrypted_shares
            return EncryptedShares(sender=e.sender, shares=_sealed_from_proto(e.shares))
        case "masked_input":
            return MaskedInput(sender=msg.masked_input.sender, data=b"")
        case "consistency_signature":
            c = msg.consistency_signature
            return ConsistencySignature(sender=c.sender, signature=c.signature)
        case "unmask_shares":
            u = msg.unmask_shares
            return UnmaskShares(
                sender=u.sender,
                seed_shares=tuple(OwnedShare(owner=s.owner, share=s.share)
                                  for s in _bounded(u.seed_shares)),
                key_shares=tuple(OwnedShare(owner=s.owner, share=s.share)
                                 for s in _bounded(u.key_shares)),
            )
    raise WireError("secure-aggregation result carries no message")


def client_payload(msg: ClientMessage) -> dict[str, Array]:
    """The payload `msg` travels with: a `MaskedInput`'s packed vector, else nothing."""
    if isinstance(msg, MaskedInput):
        return {MASKED_TENSOR: np.frombuffer(msg.data, dtype=np.uint8)}
    return {}


def masked_payload_spec(msg: ClientMessage, *, dim: int, bit_width: int) -> ModelSpec:
    """The payload layout `msg` must come with in a round of `dim` elements of `bit_width` bits."""
    if not isinstance(msg, MaskedInput):
        return EMPTY_SPEC
    nbytes = packed_size(dim, bit_width)
    return ModelSpec(tensors=(TensorSpec(MASKED_TENSOR, np.dtype(np.uint8), (nbytes,)),))


def with_payload(msg: ClientMessage, payload: Mapping[str, Array]) -> ClientMessage:
    """`msg`, decoded from its header, joined with its payload (checked against
    `masked_payload_spec`): a `MaskedInput` gets its packed vector back."""
    if not isinstance(msg, MaskedInput):
        return msg
    masked = payload.get(MASKED_TENSOR)
    if masked is None:
        raise WireError(f"a masked input comes with a {MASKED_TENSOR!r} payload")
    return MaskedInput(sender=msg.sender, data=masked.data)  # read in place: no copy


def _advert_to_proto(k: AdvertiseKeys) -> spb.AdvertiseKeys:
    return spb.AdvertiseKeys(sender=k.sender, cipher_pk=k.cipher_pk, mask_pk=k.mask_pk,
                             seed_commitment=k.seed_commitment, signature=k.signature,
                             graph_commitment=k.graph_commitment)


def _advert_from_proto(k: spb.AdvertiseKeys) -> AdvertiseKeys:
    return AdvertiseKeys(sender=k.sender, cipher_pk=k.cipher_pk, mask_pk=k.mask_pk,
                         seed_commitment=k.seed_commitment, signature=k.signature,
                         graph_commitment=k.graph_commitment)


def _reveal_to_proto(r: GraphReveal) -> spb.GraphReveal:
    return spb.GraphReveal(sender=r.sender, nonce=r.nonce)


def _reveal_from_proto(r: spb.GraphReveal) -> GraphReveal:
    return GraphReveal(sender=r.sender, nonce=r.nonce)


def _sealed_to_proto(s: SealedShare) -> spb.SealedShare:
    return spb.SealedShare(sender=s.sender, receiver=s.receiver, ciphertext=s.ciphertext)


def _sealed_from_proto(items: Iterable[spb.SealedShare]) -> tuple[SealedShare, ...]:
    return tuple(SealedShare(sender=s.sender, receiver=s.receiver, ciphertext=s.ciphertext)
                 for s in _bounded(items))


def _ids(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(_bounded(values))


def _bounded(items: Iterable[object]) -> list:  # type: ignore[type-arg]
    out = list(items)
    if len(out) > MAX_ITEMS:
        raise WireError(f"{len(out)} items in one message, the limit is {MAX_ITEMS}")
    return out
