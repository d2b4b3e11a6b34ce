"""Property tests: dataclass -> proto -> dataclass is the identity."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fedcore.protocol.messages import Done, ResultHeader, Task, TaskKind, TrainConfig, Wait
from fedcore.protocol.specs import SUPPORTED_DTYPES, ModelSpec, TensorSpec
from fedcore.wire.convert import (
    MAX_RETRY_AFTER_S,
    result_header_from_proto,
    result_header_to_proto,
    spec_from_proto,
    spec_to_proto,
    task_reply_from_proto,
    task_reply_to_proto,
)

NAMES = st.text(min_size=1, max_size=20)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def specs(draw: st.DrawFn) -> ModelSpec:
    names = draw(st.lists(NAMES, unique=True, max_size=6))
    return ModelSpec(
        tensors=tuple(
            TensorSpec(
                name=name,
                dtype=draw(st.sampled_from(SUPPORTED_DTYPES)),
                shape=tuple(draw(st.lists(st.integers(0, 2**20), max_size=4))),
            )
            for name in names
        )
    )


train_configs = st.builds(
    TrainConfig,
    local_epochs=st.integers(1, 1000),
    batch_size=st.integers(1, 1 << 16),
    learning_rate=st.floats(min_value=1e-9, max_value=10.0),
    proximal_mu=st.floats(min_value=0.0, max_value=10.0),
    max_train_s=st.floats(min_value=0.0, max_value=1e6),
)

task_replies = st.one_of(
    st.builds(
        Task,
        round=st.integers(0, 2**31),
        task_id=st.text(max_size=30),
        kind=st.sampled_from(TaskKind),
        train=train_configs,
        time_left_s=st.floats(min_value=0.0, max_value=1e6),
        model_spec=specs(),
    ),
    st.builds(Wait, retry_after_s=st.floats(min_value=0.0, max_value=MAX_RETRY_AFTER_S),
              reason=st.text()),
    st.builds(Done, reason=st.text()),
)

result_headers = st.builds(
    ResultHeader,
    client_id=st.text(max_size=30),
    task_id=st.text(max_size=30),
    num_examples=st.integers(0, 2**40),
    metrics=st.dictionaries(st.text(max_size=10), FINITE, max_size=8),
    spec=specs(),
    declined_reason=st.text(max_size=30),
)


@given(spec=specs())
def test_spec_round_trip(spec: ModelSpec) -> None:
    assert spec_from_proto(spec_to_proto(spec)) == spec


@given(spec=specs())
def test_spec_round_trip_keeps_native_numpy_dtypes(spec: ModelSpec) -> None:
    back = spec_from_proto(spec_to_proto(spec))

    assert all(isinstance(t.dtype, np.dtype) for t in back.tensors)


@given(reply=task_replies)
def test_task_reply_round_trip(reply: Task | Wait | Done) -> None:
    assert task_reply_from_proto(task_reply_to_proto(reply)) == reply


@given(seconds=st.floats(min_value=MAX_RETRY_AFTER_S, allow_infinity=True) | st.just(math.nan))
def test_a_wait_beyond_an_hour_or_nan_is_clamped_when_read(seconds: float) -> None:
    back = task_reply_from_proto(task_reply_to_proto(Wait(retry_after_s=seconds, reason="")))

    assert isinstance(back, Wait)
    assert back.retry_after_s == (0.0 if math.isnan(seconds) else MAX_RETRY_AFTER_S)


@given(header=result_headers, session=st.binary(max_size=32))
def test_result_header_round_trip(header: ResultHeader, session: bytes) -> None:
    msg = result_header_to_proto(header, session)

    assert result_header_from_proto(msg) == header
    assert msg.credentials.session == session
