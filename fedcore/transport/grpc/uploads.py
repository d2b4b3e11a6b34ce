"""Result uploads in progress on the coordinator, bounded: the memory a client can make it hold.

An `Upload` owns the one buffer its payload is assembled in. `UploadBook` admits at most one
upload per client and task and keeps the bytes of all uploads in progress within a budget,
reserving an upload's full announced size before its buffer exists. `UploadBook.close` drops
the buffer and the reservation at once, whatever ended the upload (done, refused, cancelled,
timed out), so no buffer outlives its upload waiting for a garbage collection; `end_closed`
and `cancel_client` end uploads from outside (their round closed, their client left) by
moving their deadline to now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from fedcore.engine.config import Limits
from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec
from fedcore.wire.tensor import PayloadAssembler


class UploadBusy(WireError):
    """The client already has an upload in progress for this task."""


@dataclass(slots=True, eq=False)
class Upload:
    """One upload in progress: its buffer, its chunk count and its idle deadline."""

    client_id: str
    task_id: str
    nbytes: int
    max_chunks: int
    deadline: asyncio.Timeout
    assembler: PayloadAssembler | None = None
    chunks: int = 0
    ended_by: str = ""  # why it was ended from outside ("" while it was not)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def add(self, offset: int, data: bytes | memoryview) -> None:
        """Take the next chunk; empty chunks and chunks past `max_chunks` are refused."""
        if self.assembler is None:
            raise WireError("the upload is closed")
        if not len(data):
            raise WireError("empty chunk: every chunk after the header must carry data")
        self.assembler.add(offset, data)
        self.chunks += 1
        if self.chunks > self.max_chunks:
            raise WireError(
                f"more than {self.max_chunks} chunks for {self.nbytes} bytes: send larger "
                "chunks (limits.min_chunk_bytes)"
            )

    def finish(self) -> dict[str, Array]:
        """The decoded tensors (views of the buffer)."""
        if self.assembler is None:
            raise WireError("the upload is closed")
        return self.assembler.finish()

    def end(self, reason: str) -> None:
        """End the upload from outside: its next wait for data times out at once."""
        if not self.ended_by:
            self.ended_by = reason
            self.deadline.reschedule(self._loop.time())


class UploadBook:
    """The uploads in progress and the bytes they reserve (at most `limits.upload_budget_mb`)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._open: dict[tuple[str, str], Upload] = {}
        self.reserved = 0

    def __len__(self) -> int:
        return len(self._open)

    def open(
        self, client_id: str, task_id: str, spec: ModelSpec, deadline: asyncio.Timeout
    ) -> Upload:
        """Admit an upload of `spec` and allocate its buffer.

        Raises:
            UploadBusy: the client already uploads for this task.
            PayloadTooLarge: the budget cannot hold it now (or ever).
        """
        key = (client_id, task_id)
        if key in self._open:
            raise UploadBusy(
                f"{client_id!r} already has an upload in progress for {task_id}: one at a time"
            )
        budget = self._limits.upload_budget_bytes
        if spec.nbytes > budget:
            raise PayloadTooLarge(
                f"a payload of {spec.nbytes} bytes exceeds the coordinator's upload budget of "
                f"{budget} bytes: the operator must raise limits.upload_budget_mb"
            )
        if self.reserved + spec.nbytes > budget:
            raise PayloadTooLarge(
                f"the coordinator is receiving {self.reserved} bytes of other uploads (budget "
                f"{budget}): try again later"
            )
        upload = Upload(client_id, task_id, spec.nbytes, self._limits.max_chunks(spec.nbytes),
                        deadline, PayloadAssembler(spec))
        self._open[key] = upload
        self.reserved += spec.nbytes
        return upload

    def close(self, upload: Upload) -> None:
        """Drop the upload's buffer and reservation (idempotent)."""
        upload.assembler = None
        if self._open.get((upload.client_id, upload.task_id)) is upload:
            del self._open[(upload.client_id, upload.task_id)]
            self.reserved -= upload.nbytes

    def end_closed(self, is_open: Callable[[str], bool], reason: str) -> None:
        """End every upload for a task that `is_open` says closed (its round, or its secure
        group, ended)."""
        for upload in list(self._open.values()):
            if not is_open(upload.task_id):
                upload.end(reason)

    def cancel_client(self, client_id: str, reason: str) -> None:
        """End the client's uploads (it left)."""
        for upload in list(self._open.values()):
            if upload.client_id == client_id:
                upload.end(reason)
