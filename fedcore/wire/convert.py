"""Dataclass <-> protobuf conversion. `*_from_proto` validates and raises `WireError`."""

from __future__ import annotations

import math

import numpy as np

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    CoordinatorLimits,
    Done,
    JoinReply,
    LocalDPConfig,
    ResultHeader,
    SubmitReply,
    Task,
    TaskKind,
    TaskReply,
    TrainConfig,
    Wait,
)
from fedcore.protocol.specs import ModelSpec, TensorSpec
from fedcore.wire.secagg import (
    client_message_from_proto,
    client_message_to_proto,
    server_step_from_proto,
    server_step_to_proto,
)

MAX_TENSORS = 100_000
MAX_METRICS = 256
MAX_NAME_LEN = 1024
MAX_RETRY_AFTER_S = 3600.0  # a client waits at most this long on any coordinator's hint

_DTYPES: dict[int, np.dtype[np.generic]] = {
    tpb.FLOAT32: np.dtype("float32"),
    tpb.FLOAT64: np.dtype("float64"),
    tpb.FLOAT16: np.dtype("float16"),
    tpb.INT8: np.dtype("int8"),
    tpb.INT16: np.dtype("int16"),
    tpb.INT32: np.dtype("int32"),
    tpb.INT64: np.dtype("int64"),
    tpb.UINT8: np.dtype("uint8"),
    tpb.UINT16: np.dtype("uint16"),
    tpb.UINT32: np.dtype("uint32"),
    tpb.UINT64: np.dtype("uint64"),
    tpb.BOOL: np.dtype("bool"),
}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}

_KINDS = {
    TaskKind.TRAIN: pb.TRAIN,
    TaskKind.EVALUATE: pb.EVALUATE,
    TaskKind.INITIALIZE: pb.INITIALIZE,
    TaskKind.SECAGG: pb.SECAGG,
}
_KINDS_BACK = {code: kind for kind, code in _KINDS.items()}


def spec_to_proto(spec: ModelSpec) -> tpb.ModelSpec:
    return tpb.ModelSpec(
        tensors=[
            tpb.TensorSpec(name=t.name, dtype=_DTYPE_CODES[t.dtype], shape=list(t.shape))  # type: ignore[arg-type]
            for t in spec.tensors
        ]
    )


def spec_from_proto(msg: tpb.ModelSpec) -> ModelSpec:
    if len(msg.tensors) > MAX_TENSORS:
        raise WireError(f"spec lists {len(msg.tensors)} tensors, the limit is {MAX_TENSORS}")
    tensors = []
    for t in msg.tensors:
        if t.dtype not in _DTYPES:
            raise WireError(f"tensor {t.name!r}: unknown dtype code {t.dtype}")
        if not t.name or len(t.name) > MAX_NAME_LEN:
            raise WireError(f"tensor name must have 1..{MAX_NAME_LEN} characters")
        tensors.append(TensorSpec(name=t.name, dtype=_DTYPES[t.dtype], shape=tuple(t.shape)))
    return ModelSpec(tensors=tuple(tensors))


def train_config_to_proto(cfg: TrainConfig) -> pb.TrainConfig:
    dp = cfg.local_dp
    return pb.TrainConfig(
        local_epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        proximal_mu=cfg.proximal_mu,
        max_train_s=cfg.max_train_s,
        local_dp=pb.LocalDP(
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            target_epsilon=dp.target_epsilon,
            delta=dp.delta,
            planned_rounds=dp.planned_rounds,
        )
        if dp is not None
        else None,
    )


def train_config_from_proto(msg: pb.TrainConfig) -> TrainConfig:
    try:
        dp = msg.local_dp if msg.HasField("local_dp") else None
        return TrainConfig(
            local_epochs=msg.local_epochs,
            batch_size=msg.batch_size,
            learning_rate=msg.learning_rate,
            proximal_mu=msg.proximal_mu,
            max_train_s=msg.max_train_s,
            local_dp=LocalDPConfig(
                noise_multiplier=dp.noise_multiplier,
                max_grad_norm=dp.max_grad_norm,
                target_epsilon=dp.target_epsilon,
                delta=dp.delta,
                planned_rounds=dp.planned_rounds,
            )
            if dp is not None
            else None,
        )
    except ValueError as err:
        raise WireError(f"bad train config: {err}") from err


def task_reply_to_proto(reply: TaskReply) -> pb.TaskReply:
    match reply:
        case Task():
            return pb.TaskReply(
                task=pb.Task(
                    round=reply.round,
                    task_id=reply.task_id,
                    kind=_KINDS[reply.kind],
                    train=train_config_to_proto(reply.train),
                    time_left_s=reply.time_left_s,
                    model_spec=spec_to_proto(reply.model_spec),
                    secagg=server_step_to_proto(reply.secagg) if reply.secagg else None,
                )
            )
        case Wait():
            return pb.TaskReply(wait=pb.Wait(retry_after_s=reply.retry_after_s, reason=reply.reason))
        case Done():
            return pb.TaskReply(done=pb.Done(reason=reply.reason))


def task_reply_from_proto(msg: pb.TaskReply) -> TaskReply:
    which = msg.WhichOneof("reply")
    if which == "task":
        t = msg.task
        if t.kind not in _KINDS_BACK:
            raise WireError(f"unknown task kind {t.kind}; upgrade the client")
        return Task(
            round=t.round,
            task_id=t.task_id,
            kind=_KINDS_BACK[t.kind],
            train=train_config_from_proto(t.train),
            time_left_s=t.time_left_s,
            model_spec=spec_from_proto(t.model_spec),
            secagg=server_step_from_proto(t.secagg) if t.HasField("secagg") else None,
        )
    if which == "wait":
        return Wait(retry_after_s=retry_hint(msg.wait.retry_after_s), reason=msg.wait.reason)
    if which == "done":
        return Done(reason=msg.done.reason)
    raise WireError("task reply carries neither task, wait nor done")


def join_reply_to_proto(reply: JoinReply) -> pb.JoinReply:
    lim = reply.limits
    return pb.JoinReply(
        session=reply.session,
        client_timeout_s=reply.client_timeout_s,
        long_poll_s=reply.long_poll_s,
        limits=pb.Limits(
            max_message_bytes=lim.max_message_bytes,
            max_payload_bytes=lim.max_payload_bytes,
            chunk_bytes=lim.chunk_bytes,
            min_chunk_bytes=lim.min_chunk_bytes,
            max_metrics=lim.max_metrics,
            max_metric_key_chars=lim.max_metric_key_chars,
            max_client_id_bytes=lim.max_client_id_bytes,
        ),
    )


def join_reply_from_proto(msg: pb.JoinReply) -> JoinReply:
    """A join reply; fields an older coordinator leaves out read as 0 ("not stated")."""
    if not msg.session:
        raise WireError("join reply carries no session")
    for name in ("client_timeout_s", "long_poll_s"):
        value = getattr(msg, name)
        if not math.isfinite(value) or value < 0:
            raise WireError(f"join reply's {name} must be a finite number >= 0, got {value}")
    lim = msg.limits
    return JoinReply(
        session=msg.session,
        client_timeout_s=msg.client_timeout_s,
        long_poll_s=msg.long_poll_s,
        limits=CoordinatorLimits(
            max_message_bytes=lim.max_message_bytes,
            max_payload_bytes=lim.max_payload_bytes,
            chunk_bytes=lim.chunk_bytes,
            min_chunk_bytes=lim.min_chunk_bytes,
            max_metrics=lim.max_metrics,
            max_metric_key_chars=lim.max_metric_key_chars,
            max_client_id_bytes=lim.max_client_id_bytes,
        ),
    )


def submit_reply_to_proto(reply: SubmitReply) -> pb.SubmitReply:
    return pb.SubmitReply(message="accepted", retry_after_s=reply.retry_after_s)


def submit_reply_from_proto(msg: pb.SubmitReply) -> SubmitReply:
    """The reply's retry hint (`retry_hint`: a hint, never a reason to hang)."""
    return SubmitReply(retry_after_s=retry_hint(msg.retry_after_s))


def retry_hint(seconds: float) -> float:
    """A coordinator's retry hint made safe: NaN and negatives read 0, at most an hour."""
    return 0.0 if math.isnan(seconds) else min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def result_header_to_proto(h: ResultHeader, session: bytes) -> pb.ResultHeader:
    return pb.ResultHeader(
        credentials=pb.Credentials(client_id=h.client_id, session=session),
        task_id=h.task_id,
        num_examples=h.num_examples,
        metrics=dict(h.metrics),
        spec=spec_to_proto(h.spec),
        declined_reason=h.declined_reason,
        permanent=h.permanent,
        secagg=client_message_to_proto(h.secagg) if h.secagg is not None else None,
    )


def result_header_from_proto(msg: pb.ResultHeader) -> ResultHeader:
    if len(msg.metrics) > MAX_METRICS:
        raise WireError(f"{len(msg.metrics)} metrics, the limit is {MAX_METRICS}")
    for key, value in msg.metrics.items():
        if not math.isfinite(value):
            raise WireError(f"metric {key!r} is not finite")
    return ResultHeader(
        client_id=msg.credentials.client_id,
        task_id=msg.task_id,
        num_examples=msg.num_examples,
        metrics=dict(msg.metrics),
        spec=spec_from_proto(msg.spec),
        declined_reason=msg.declined_reason,
        permanent=msg.permanent,
        secagg=client_message_from_proto(msg.secagg) if msg.HasField("secagg") else None,
    )
