from fedcore.proto.v1 import secagg_pb2 as _secagg_pb2
from fedcore.proto.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TRAIN: _ClassVar[TaskKind]
    EVALUATE: _ClassVar[TaskKind]
    INITIALIZE: _ClassVar[TaskKind]
    SECAGG: _ClassVar[TaskKind]
TASK_KIND_UNSPECIFIED: TaskKind
TRAIN: TaskKind
EVALUATE: TaskKind
INITIALIZE: TaskKind
SECAGG: TaskKind

class Credentials(_message.Message):
    __slots__ = ("client_id", "session")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    session: bytes
    def __init__(self, client_id: _Optional[str] = ..., session: _Optional[bytes] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("client_id", "protocol_version", "auth_token", "properties")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    protocol_version: int
    auth_token: str
    properties: _containers.ScalarMap[str, str]
    def __init__(self, client_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., auth_token: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("session", "client_timeout_s", "long_poll_s", "limits")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LONG_POLL_S_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    client_timeout_s: float
    long_poll_s: float
    limits: Limits
    def __init__(self, session: _Optional[bytes] = ..., client_timeout_s: _Optional[float] = ..., long_poll_s: _Optional[float] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_payload_bytes", "chunk_bytes", "min_chunk_bytes", "max_metrics", "max_metric_key_chars", "max_client_id_bytes")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIN_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_METRICS_FIELD_NUMBER: _ClassVar[int]
    MAX_METRIC_KEY_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLIENT_ID_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_payload_bytes: int
    chunk_bytes: int
    min_chunk_bytes: int
    max_metrics: int
    max_metric_key_chars: int
    max_client_id_bytes: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_payload_bytes: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., min_chunk_bytes: _Optional[int] = ..., max_metrics: _Optional[int] = ..., max_metric_key_chars: _Optional[int] = ..., max_client_id_bytes: _Optional[int] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: Credentials
    def __init__(self, credentials: _Optional[_Union[Credentials, _Mapping]] = ...) -> None: ...

class TrainConfig(_message.Message):
    __slots__ = ("local_epochs", "batch_size", "learning_rate", "proximal_mu", "max_train_s", "local_dp")
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PROXIMAL_MU_FIELD_NUMBER: _ClassVar[int]
    MAX_TRAIN_S_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DP_FIELD_NUMBER: _ClassVar[int]
    local_epochs: int
    batch_size: int
    learning_rate: float
    proximal_mu: float
    max_train_s: float
    local_dp: LocalDP
    def __init__(self, local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., proximal_mu: _Optional[float] = ..., max_train_s: _Optional[float] = ..., local_dp: _Optional[_Union[LocalDP, _Mapping]] = ...) -> None: ...

class LocalDP(_message.Message):
    __slots__ = ("noise_multiplier", "max_grad_norm", "target_epsilon", "delta", "planned_rounds")
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    noise_multiplier: float
    max_grad_norm: float
    target_epsilon: float
    delta: float
    planned_rounds: int
    def __init__(self, noise_multiplier: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., target_epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., planned_rounds: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("round", "task_id", "kind", "train", "time_left_s", "model_spec", "secagg")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    TIME_LEFT_S_FIELD_NUMBER: _ClassVar[int]
    MODEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    round: int
    task_id: str
    kind: TaskKind
    train: TrainConfig
    time_left_s: float
    model_spec: _tensor_pb2.ModelSpec
    secagg: _secagg_pb2.SecAggServerMessage
    def __init__(self, round: _Optional[int] = ..., task_id: _Optional[str] = ..., kind: _Optional[_Union[TaskKind, str]] = ..., train: _Optional[_Union[TrainConfig, _Mapping]] = ..., time_left_s: _Optional[float] = ..., model_spec: _Optional[_Union[_tensor_pb2.ModelSpec, _Mapping]] = ..., secagg: _Optional[_Union[_secagg_pb2.SecAggServerMessage, _Mapping]] = ...) -> None: ...

class Wait(_message.Message):
    __slots__ = ("retry_after_s", "reason")
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    retry_after_s: float
    reason: str
    def __init__(self, retry_after_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class TaskReply(_message.Message):
    __slots__ = ("task", "wait", "done")
    TASK_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    task: Task
    wait: Wait
    done: Done
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., wait: _Optional[_Union[Wait, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("credentials", "task_id")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    credentials: Credentials
    task_id: str
    def __init__(self, credentials: _Optional[_Union[Credentials, _Mapping]] = ..., task_id: _Optional[str] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("spec", "chunk")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    spec: _tensor_pb2.ModelSpec
    chunk: _tensor_pb2.Chunk
    def __init__(self, spec: _Optional[_Union[_tensor_pb2.ModelSpec, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.Chunk, _Mapping]] = ...) -> None: ...

class ResultHeader(_message.Message):
    __slots__ = ("credentials", "task_id", "num_examples", "metrics", "spec", "declined_reason", "permanent", "secagg")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DECLINED_REASON_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    credentials: Credentials
    task_id: str
    num_examples: int
    metrics: _containers.ScalarMap[str, float]
    spec: _tensor_pb2.ModelSpec
    declined_reason: str
    permanent: bool
    secagg: _secagg_pb2.SecAggClientMessage
    def __init__(self, credentials: _Optional[_Union[Credentials, _Mapping]] = ..., task_id: _Optional[str] = ..., num_examples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., spec: _Optional[_Union[_tensor_pb2.ModelSpec, _Mapping]] = ..., declined_reason: _Optional[str] = ..., permanent: _Optional[bool] = ..., secagg: _Optional[_Union[_secagg_pb2.SecAggClientMessage, _Mapping]] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ResultHeader
    chunk: _tensor_pb2.Chunk
    def __init__(self, header: _Optional[_Union[ResultHeader, _Mapping]] = ..., chunk: _Optional[_Union[_tensor_pb2.Chunk, _Mapping]] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("message", "retry_after_s")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    message: str
    retry_after_s: float
    def __init__(self, message: _Optional[str] = ..., retry_after_s: _Optional[float] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: Credentials
    def __init__(self, credentials: _Optional[_Union[Credentials, _Mapping]] = ...) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
