from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecAggMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECAGG_MODE_UNSPECIFIED: _ClassVar[SecAggMode]
    FULL: _ClassVar[SecAggMode]
    SECAGG_PLUS: _ClassVar[SecAggMode]

class IntegerNoise(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTEGER_NOISE_SKELLAM: _ClassVar[IntegerNoise]
    INTEGER_NOISE_DISCRETE_GAUSSIAN: _ClassVar[IntegerNoise]
SECAGG_MODE_UNSPECIFIED: SecAggMode
FULL: SecAggMode
SECAGG_PLUS: SecAggMode
INTEGER_NOISE_SKELLAM: IntegerNoise
INTEGER_NOISE_DISCRETE_GAUSSIAN: IntegerNoise

class SecAggSetup(_message.Message):
    __slots__ = ("client", "num_clients", "threshold", "max_clients", "clip", "bit_width", "mode", "degree", "graph_seed", "round_id", "dim", "weight_cap", "distributed_dp", "participants")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NUM_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    BIT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SEED_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_CAP_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTED_DP_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    client: int
    num_clients: int
    threshold: int
    max_clients: int
    clip: float
    bit_width: int
    mode: SecAggMode
    degree: int
    graph_seed: bytes
    round_id: int
    dim: int
    weight_cap: float
    distributed_dp: DistributedDP
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client: _Optional[int] = ..., num_clients: _Optional[int] = ..., threshold: _Optional[int] = ..., max_clients: _Optional[int] = ..., clip: _Optional[float] = ..., bit_width: _Optional[int] = ..., mode: _Optional[_Union[SecAggMode, str]] = ..., degree: _Optional[int] = ..., graph_seed: _Optional[bytes] = ..., round_id: _Optional[int] = ..., dim: _Optional[int] = ..., weight_cap: _Optional[float] = ..., distributed_dp: _Optional[_Union[DistributedDP, _Mapping]] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class DistributedDP(_message.Message):
    __slots__ = ("noise_multiplier", "clip_norm", "kind", "delta")
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    noise_multiplier: float
    clip_norm: float
    kind: IntegerNoise
    delta: float
    def __init__(self, noise_multiplier: _Optional[float] = ..., clip_norm: _Optional[float] = ..., kind: _Optional[_Union[IntegerNoise, str]] = ..., delta: _Optional[float] = ...) -> None: ...

class AdvertiseKeys(_message.Message):
    __slots__ = ("sender", "cipher_pk", "mask_pk", "seed_commitment", "signature", "graph_commitment")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    CIPHER_PK_FIELD_NUMBER: _ClassVar[int]
    MASK_PK_FIELD_NUMBER: _ClassVar[int]
    SEED_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    cipher_pk: bytes
    mask_pk: bytes
    seed_commitment: bytes
    signature: bytes
    graph_commitment: bytes
    def __init__(self, sender: _Optional[int] = ..., cipher_pk: _Optional[bytes] = ..., mask_pk: _Optional[bytes] = ..., seed_commitment: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., graph_commitment: _Optional[bytes] = ...) -> None: ...

class GraphCommitment(_message.Message):
    __slots__ = ("sender", "commitment")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    commitment: bytes
    def __init__(self, sender: _Optional[int] = ..., commitment: _Optional[bytes] = ...) -> None: ...

class GraphCommitments(_message.Message):
    __slots__ = ("recipient", "commitments")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    recipient: int
    commitments: _containers.RepeatedCompositeFieldContainer[GraphCommitment]
    def __init__(self, recipient: _Optional[int] = ..., commitments: _Optional[_Iterable[_Union[GraphCommitment, _Mapping]]] = ...) -> None: ...

class GraphReveal(_message.Message):
    __slots__ = ("sender", "nonce")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    sender: int
    nonce: bytes
    def __init__(self, sender: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class KeyList(_message.Message):
    __slots__ = ("recipient", "keys", "reveals")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REVEALS_FIELD_NUMBER: _ClassVar[int]
    recipient: int
    keys: _containers.RepeatedCompositeFieldContainer[AdvertiseKeys]
    reveals: _containers.RepeatedCompositeFieldContainer[GraphReveal]
    def __init__(self, recipient: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[AdvertiseKeys, _Mapping]]] = ..., reveals: _Optional[_Iterable[_Union[GraphReveal, _Mapping]]] = ...) -> None: ...

class SealedShare(_message.Message):
    __slots__ = ("sender", "receiver", "ciphertext")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    receiver: int
    ciphertext: bytes
    def __init__(self, sender: _Optional[int] = ..., receiver: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class EncryptedShares(_message.Message):
    __slots__ = ("sender", "shares")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    sender: int
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    def __init__(self, sender: _Optional[int] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ...) -> None: ...

class ShareRelay(_message.Message):
    __slots__ = ("recipient", "shares")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    recipient: int
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    def __init__(self, recipient: _Optional[int] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ...) -> None: ...

class MaskedInputHeader(_message.Message):
    __slots__ = ("sender",)
    SENDER_FIELD_NUMBER: _ClassVar[int]
    sender: int
    def __init__(self, sender: _Optional[int] = ...) -> None: ...

class ConsistencyRequest(_message.Message):
    __slots__ = ("recipient", "survivors")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    recipient: int
    survivors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, recipient: _Optional[int] = ..., survivors: _Optional[_Iterable[int]] = ...) -> None: ...

class ConsistencySignature(_message.Message):
    __slots__ = ("sender", "signature")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    sender: int
    signature: bytes
    def __init__(self, sender: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class UnmaskRequest(_message.Message):
    __slots__ = ("recipient", "survivors", "dropped", "signatures")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    recipient: int
    survivors: _containers.RepeatedScalarFieldContainer[int]
    dropped: _containers.RepeatedScalarFieldContainer[int]
    signatures: _containers.RepeatedCompositeFieldContainer[ConsistencySignature]
    def __init__(self, recipient: _Optional[int] = ..., survivors: _Optional[_Iterable[int]] = ..., dropped: _Optional[_Iterable[int]] = ..., signatures: _Optional[_Iterable[_Union[ConsistencySignature, _Mapping]]] = ...) -> None: ...

class OwnedShare(_message.Message):
    __slots__ = ("owner", "share")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    owner: int
    share: bytes
    def __init__(self, owner: _Optional[int] = ..., share: _Optional[bytes] = ...) -> None: ...

class UnmaskShares(_message.Message):
    __slots__ = ("sender", "seed_shares", "key_shares")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SEED_SHARES_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    sender: int
    seed_shares: _containers.RepeatedCompositeFieldContainer[OwnedShare]
    key_shares: _containers.RepeatedCompositeFieldContainer[OwnedShare]
    def __init__(self, sender: _Optional[int] = ..., seed_shares: _Optional[_Iterable[_Union[OwnedShare, _Mapping]]] = ..., key_shares: _Optional[_Iterable[_Union[OwnedShare, _Mapping]]] = ...) -> None: ...

class SecAggServerMessage(_message.Message):
    __slots__ = ("setup", "key_list", "share_relay", "consistency_request", "unmask_request", "graph_commitments")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    KEY_LIST_FIELD_NUMBER: _ClassVar[int]
    SHARE_RELAY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_REQUEST_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    GRAPH_COMMITMENTS_FIELD_NUMBER: _ClassVar[int]
    setup: SecAggSetup
    key_list: KeyList
    share_relay: ShareRelay
    consistency_request: ConsistencyRequest
    unmask_request: UnmaskRequest
    graph_commitments: GraphCommitments
    def __init__(self, setup: _Optional[_Union[SecAggSetup, _Mapping]] = ..., key_list: _Optional[_Union[KeyList, _Mapping]] = ..., share_relay: _Optional[_Union[ShareRelay, _Mapping]] = ..., consistency_request: _Optional[_Union[ConsistencyRequest, _Mapping]] = ..., unmask_request: _Optional[_Union[UnmaskRequest, _Mapping]] = ..., graph_commitments: _Optional[_Union[GraphCommitments, _Mapping]] = ...) -> None: ...

class SecAggClientMessage(_message.Message):
    __slots__ = ("advertise_keys", "encrypted_shares", "masked_input", "consistency_signature", "unmask_shares", "graph_reveal")
    ADVERTISE_KEYS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_SHARES_FIELD_NUMBER: _ClassVar[int]
    MASKED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    UNMASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    GRAPH_REVEAL_FIELD_NUMBER: _ClassVar[int]
    advertise_keys: AdvertiseKeys
    encrypted_shares: EncryptedShares
    masked_input: MaskedInputHeader
    consistency_signature: ConsistencySignature
    unmask_shares: UnmaskShares
    graph_reveal: GraphReveal
    def __init__(self, advertise_keys: _Optional[_Union[AdvertiseKeys, _Mapping]] = ..., encrypted_shares: _Optional[_Union[EncryptedShares, _Mapping]] = ..., masked_input: _Optional[_Union[MaskedInputHeader, _Mapping]] = ..., consistency_signature: _Optional[_Union[ConsistencySignature, _Mapping]] = ..., unmask_shares: _Optional[_Union[UnmaskShares, _Mapping]] = ..., graph_reveal: _Optional[_Union[GraphReveal, _Mapping]] = ...) -> None: ...
