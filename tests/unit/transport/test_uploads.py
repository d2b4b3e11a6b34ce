"""The upload book: one upload per client and task, a byte budget, buffers dropped on close."""

from __future__ import annotations

import asyncio
import logging
import weakref

import numpy as np
import pytest

from fedcore.engine.config import Limits
from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.specs import spec_of
from fedcore.transport.grpc.malformed import Malformed, RateLimitedLog, tolerant
from fedcore.transport.grpc.uploads import UploadBook, UploadBusy

SPEC = spec_of({"w": np.zeros(2048, np.float32)})  # 8192 bytes


def _run(body):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with asyncio.timeout(60) as deadline:
            await asyncio.sleep(0)
            return body(deadline)

    return asyncio.run(main())


def test_one_upload_per_client_and_task_and_the_budget_holds() -> None:
    def body(deadline: asyncio.Timeout) -> None:
        book = UploadBook(Limits(upload_budget_mb=20000 / (1 << 20)))
        first = book.open("a", "t1", SPEC, deadline)
        with pytest.raises(UploadBusy):
            book.open("a", "t1", SPEC, deadline)
        second = book.open("b", "t1", SPEC, deadline)
        with pytest.raises(PayloadTooLarge, match="try again later"):
            book.open("c", "t1", SPEC, deadline)
        assert book.reserved == 2 * SPEC.nbytes and len(book) == 2
        book.close(first)
        book.close(first)  # idempotent
        assert book.reserved == SPEC.nbytes
        book.close(book.open("c", "t1", SPEC, deadline))
        book.close(second)
        assert book.reserved == 0 and len(book) == 0

    _run(body)


def test_close_drops_the_buffer_even_while_the_upload_is_still_referenced() -> None:
    def body(deadline: asyncio.Timeout) -> None:
        book = UploadBook(Limits())
        upload = book.open("a", "t1", SPEC, deadline)
        assert upload.assembler is not None
        buffer = weakref.ref(upload.assembler)
        book.close(upload)
        assert buffer() is None and upload.assembler is None
        with pytest.raises(WireError, match="closed"):
            upload.add(0, b"x" * 8192)

    _run(body)


def test_chunks_must_carry_data_and_be_few_enough() -> None:
    def body(deadline: asyncio.Timeout) -> None:
        book = UploadBook(Limits(min_chunk_bytes=4096))
        upload = book.open("a", "t1", SPEC, deadline)
        assert upload.max_chunks == 3
        with pytest.raises(WireError, match="empty chunk"):
            upload.add(0, b"")
        for offset in range(0, 3 * 1024, 1024):
            upload.add(offset, b"\0" * 1024)
        with pytest.raises(WireError, match="min_chunk_bytes"):
            upload.add(3 * 1024, b"\0" * 1024)

    _run(body)


def test_a_payload_over_the_whole_budget_names_the_setting() -> None:
    def body(deadline: asyncio.Timeout) -> None:
        with pytest.raises(PayloadTooLarge, match="limits.upload_budget_mb"):
            UploadBook(Limits(upload_budget_mb=0.001)).open("a", "t1", SPEC, deadline)

    _run(body)


def test_ending_an_upload_from_outside_times_out_its_wait() -> None:
    async def main() -> str:
        book = UploadBook(Limits())
        try:
            async with asyncio.timeout(60) as deadline:
                upload = book.open("a", "t1", SPEC, deadline)
                asyncio.get_running_loop().call_soon(book.end_closed, lambda t: t == "t2",
                                                     "its round closed")
                await asyncio.sleep(30)
        except TimeoutError:
            return upload.ended_by
        return "not ended"

    assert asyncio.run(main()) == "its round closed"


def test_tolerant_turns_parse_errors_and_oversized_input_into_malformed() -> None:
    def parse(raw: bytes) -> int:
        return int(raw)

    assert tolerant(parse)(b"12") == 12
    bad = tolerant(parse)(b"x")
    assert isinstance(bad, Malformed) and bad.size == 1 and "ValueError" in bad.error
    big = tolerant(parse, max_bytes=2)(b"123")
    assert isinstance(big, Malformed) and "more than" in big.error


def test_rate_limited_log_writes_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.refusals"), lambda: now[0], interval_s=10.0)
    caplog.set_level(logging.WARNING, "test.refusals")
    assert log.report("bad", "from %s", "a")
    assert not any(log.report("bad", "from %s", "b") for _ in range(5))
    assert log.report("other", "x")
    now[0] = 10.0
    assert log.report("bad", "from %s", "c")
    assert [r.getMessage() for r in caplog.records] == [
        "bad: from a", "other: x", "bad: from c (5 more like it in the last 10s not logged)",
    ]


class _Aborted(Exception):
    def __init__(self, code: object, details: str) -> None:
        super().__init__(details)
        self.code = code


class _Context:
    async def abort(self, code: object, details: str) -> None:
        raise _Aborted(code, details)


def test_an_upload_ended_while_its_next_message_is_on_the_way_is_still_ended() -> None:
    """`end` moves the deadline to now; a message that wakes the handler first must not move
    it back (the service checks `ended_by` after every message)."""
    import grpc

    from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
    from fedcore.protocol.messages import ResultHeader, Task
    from fedcore.strategy import FedAvg
    from fedcore.transport.grpc.chunks import ResultPart
    from fedcore.transport.grpc.coordinator_service import CoordinatorService
    from fedcore.wire import convert

    model = {"w": np.zeros(1024, np.float32)}
    engine = RoundEngine(EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None),
                         FedAvg(), initial_params=model)
    session = engine.join("c", now=0.0)
    engine.tick(0.0)
    task = engine.poll("c", now=0.0)
    assert isinstance(task, Task)
    header = convert.result_header_to_proto(
        ResultHeader(client_id="c", task_id=task.task_id, num_examples=1, spec=spec_of(model)),
        session)

    async def main() -> _Aborted:
        service = CoordinatorService(engine, clock=lambda: 0.0)

        async def messages():  # type: ignore[no-untyped-def]
            yield ResultPart(header=header)
            service.uploads.end_closed(lambda t: False, "its round closed")  # same loop turn
            yield ResultPart(offset=0, data=np.ones(1024, np.float32).tobytes())

        with pytest.raises(_Aborted) as err:
            await service.SubmitResult(messages(), _Context())  # type: ignore[arg-type]
        assert service.uploads.reserved == 0
        return err.value

    aborted = asyncio.run(main())
    assert aborted.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "its round closed" in str(aborted)
    assert engine.open_task_id == task.task_id  # the round itself is still open: nothing taken
