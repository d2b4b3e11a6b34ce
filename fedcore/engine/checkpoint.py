"""A run's checkpoint as bytes: the engine's snapshot encoded and decoded, without I/O.

`fedcore.storage.checkpoints` keeps it in one file per run, replaced atomically after every
completed round. Layout: the magic line `FEDCORE-CHECKPOINT 1\n`, an 8-byte little-endian
header length, a JSON header (round counter, task sequence, records, tensor specs, the
distributed-DP ledger: each round's noise setting, so ε is never re-priced), then the
raw little-endian bytes of the model and of the strategy state (fedcore's wire encoding).
A buffered run's checkpoint (`BufferedSnapshot`) has the same layout; its header says
`"kind": "buffered"` and holds the version, counters and server-step records instead (a header
without `kind` is a round-based run's). Nothing is pickled: decoding a checkpoint never
executes code.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import numpy as np

from fedcore.dp.distributed_accountant import (
    APPROX_KEY,
    EXACT_KEY,
    DistributedStep,
    steps_from_json,
    steps_to_json,
)
from fedcore.engine.buffered import BufferedSnapshot, BufferRecord
from fedcore.engine.records import RoundRecord, RoundStatus
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.errors import FedcoreError
from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec, TensorSpec, spec_of
from fedcore.wire.tensor import decode, encode

MAGIC = b"FEDCORE-CHECKPOINT 1\n"
_LEN = struct.Struct("<Q")
MAX_HEADER_BYTES = 64 << 20
ROUNDS, BUFFERED = "rounds", "buffered"


class CheckpointError(FedcoreError, ValueError):
    """A checkpoint file is damaged or not a fedcore checkpoint; the message names the file."""


def checkpoint_to_bytes(snapshot: EngineSnapshot) -> bytes:
    """`snapshot` in the checkpoint layout."""
    return _pack({
        "round": snapshot.round,
        "task_seq": snapshot.task_seq,
        "records": [_record_to_json(r) for r in snapshot.records],
        "distributed_dp": steps_to_json(snapshot.distributed_dp),
    }, snapshot.params, snapshot.strategy_state)


def buffered_checkpoint_to_bytes(snapshot: BufferedSnapshot) -> bytes:
    """A buffered run's `snapshot` in the checkpoint layout."""
    return _pack({
        "kind": BUFFERED,
        "version": snapshot.version,
        "tasks_issued": snapshot.tasks_issued,
        "stale_refused": snapshot.stale_refused,
        "expired": snapshot.expired,
        "declined": snapshot.declined,
        "records": [dataclasses.asdict(r) for r in snapshot.records],
    }, snapshot.params, snapshot.strategy_state)


def checkpoint_from_bytes(data: bytes) -> EngineSnapshot:
    """The round-based run's snapshot `data` holds.

    Raises:
        CheckpointError: `data` is not a whole fedcore checkpoint of a round-based run.
    """
    header, params, state = _unpack(data, ROUNDS)
    try:
        records = tuple(_record_from_json(r) for r in header["records"])
        return EngineSnapshot(
            round=int(header["round"]), task_seq=int(header["task_seq"]), params=params,
            records=records, strategy_state=state,
            distributed_dp=_distributed_dp(header, records),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"damaged: {err}") from err


def buffered_checkpoint_from_bytes(data: bytes) -> BufferedSnapshot:
    """The buffered run's snapshot `data` holds.

    Raises:
        CheckpointError: `data` is not a whole fedcore checkpoint of a buffered run.
    """
    header, params, state = _unpack(data, BUFFERED)
    try:
        return BufferedSnapshot(
            version=int(header["version"]), params=params, strategy_state=state,
            records=tuple(_buffer_record_from_json(r) for r in header["records"]),
            tasks_issued=int(header["tasks_issued"]), stale_refused=int(header["stale_refused"]),
            expired=int(header["expired"]), declined=int(header["declined"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"damaged: {err}") from err


def _pack(header: dict[str, Any], params: dict[str, Array], state: dict[str, Array]) -> bytes:
    model_spec, state_spec = spec_of(params), spec_of(state)
    head = json.dumps({**header, "model": _spec_to_json(model_spec),
                       "strategy_state": _spec_to_json(state_spec)}).encode()
    return b"".join((MAGIC, _LEN.pack(len(head)), head, encode(params), encode(state)))


def _unpack(data: bytes, kind: str) -> tuple[dict[str, Any], dict[str, Array], dict[str, Array]]:
    """The header, model and strategy state of a checkpoint of `kind`."""
    try:
        header, body = _header(data)
        found = header.get("kind", ROUNDS)
        if found != kind:
            raise CheckpointError(
                f"a {found} run's checkpoint, and this run is {kind}: "
                + ("add [buffered] to go on with it" if found == BUFFERED
                   else "remove [buffered] to go on with it"))
        model_spec = _spec_from_json(header["model"])
        state_spec = _spec_from_json(header["strategy_state"])
        if len(body) != model_spec.nbytes + state_spec.nbytes:
            raise ValueError(f"payload has {len(body)} bytes, the header announces more or fewer")
        return (header, _owned(decode(model_spec, body[: model_spec.nbytes])),
                _owned(decode(state_spec, body[model_spec.nbytes :])))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, WireError, struct.error) as err:
        raise CheckpointError(f"damaged: {err}") from err


def _header(data: bytes) -> tuple[dict[str, Any], memoryview]:
    if not data.startswith(MAGIC):
        raise ValueError("not a fedcore checkpoint (bad magic)")
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"header of {n} bytes is too large")
    start = len(MAGIC) + _LEN.size
    header = json.loads(data[start : start + n])
    if not isinstance(header, dict):
        raise TypeError("the header is not a JSON object")
    return header, memoryview(data)[start + n :]


def _distributed_dp(header: dict[str, Any], records: tuple[RoundRecord, ...]) -> tuple[
        DistributedStep, ...]:
    """The distributed-DP ledger; refused when an older checkpoint reported ε without one."""
    if "distributed_dp" in header:
        return steps_from_json(header["distributed_dp"])
    if any(EXACT_KEY in r.metrics or APPROX_KEY in r.metrics for r in records):
        raise ValueError(
            "it reports distributed DP rounds but was written before each round's setting was "
            "kept, so their price is unknown; finish the run with the fedcore version that "
            "wrote it, or start a new run in another output directory"
        )
    return ()


def _owned(tensors: dict[str, Array]) -> dict[str, Array]:
    return {k: np.array(v, copy=True) for k, v in tensors.items()}


def _spec_to_json(spec: ModelSpec) -> list[dict[str, Any]]:
    return [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)} for t in spec.tensors]


def _spec_from_json(items: list[dict[str, Any]]) -> ModelSpec:
    return ModelSpec(
        tensors=tuple(
            TensorSpec(name=str(t["name"]), dtype=np.dtype(str(t["dtype"])),
                       shape=tuple(int(d) for d in t["shape"]))
            for t in items
        )
    )


def _record_to_json(record: RoundRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _record_from_json(row: dict[str, Any]) -> RoundRecord:
    return RoundRecord(**{**row, "status": RoundStatus(row["status"]),
                          "metrics": {str(k): float(v) for k, v in row["metrics"].items()}})


def _buffer_record_from_json(row: dict[str, Any]) -> BufferRecord:
    return BufferRecord(version=int(row["version"]), at_s=float(row["at_s"]),
                        staleness=tuple(int(t) for t in row["staleness"]),
                        measurements={str(k): float(v) for k, v in row["measurements"].items()},
                        evaluation={str(k): float(v)
                                    for k, v in row.get("evaluation", {}).items()},
                        eval_clients=int(row.get("eval_clients", 0)))
