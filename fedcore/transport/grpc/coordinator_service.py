"""The Coordinator gRPC service: translate protos, call the round engine, map refusals.

Runs on one asyncio event loop, which serialises every engine call: the engine needs no lock.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import NoReturn

import grpc

from fedcore.engine.engine import RoundEngine
from fedcore.engine.errors import EngineError
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.messages import TaskResult, Wait
from fedcore.transport.grpc.chunks import (
    ResultPart,
    as_result_part,
    encode_chunk_message,
    read_result_chunk,
)
from fedcore.transport.grpc.status import CODES
from fedcore.wire import convert
from fedcore.wire.tensor import PayloadAssembler, iter_chunk_views

log = logging.getLogger(__name__)

SERVICE_NAME = "fedcore.v1.Coordinator"

Clock = Callable[[], float]


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """Thin gRPC adapter around a `RoundEngine`.

    `GetTask` long-polls: a client told to wait is held for up to `long_poll_s` until the engine
    changes (a round opens), so rounds start without polling delay.
    """

    def __init__(
        self,
        engine: RoundEngine,
        *,
        clock: Clock = time.monotonic,
        long_poll_s: float = 5.0,
        auth_token: str = "",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.long_poll_s = long_poll_s
        self._auth_token = auth_token
        self._on_change = on_change
        self._changed = asyncio.Event()
        self._state = self._snapshot()
        self._raw_chunks = False  # set by `add_to_server`: DownloadModel's serialiser passes bytes

    def _out(self, chunk: bytes) -> bytes | pb.ModelChunk:
        return chunk if self._raw_chunks else pb.ModelChunk.FromString(chunk)

    # ----------------------------------------------------------------- RPCs
    async def Join(self, request: pb.JoinRequest, context: grpc.aio.ServicerContext) -> pb.JoinReply:
        if self._auth_token and not hmac.compare_digest(
            request.auth_token.encode(), self._auth_token.encode()
        ):
            log.warning("join refused for %r: bad auth token", request.client_id)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing auth token")
        try:
            session = self.engine.join(
                request.client_id,
                now=self.clock(),
                protocol_version=request.protocol_version,
                properties=dict(request.properties),
            )
        except EngineError as err:
            await _abort(context, err)
        log.info("client %s joined", request.client_id)
        self.notify()
        return pb.JoinReply(session=session, client_timeout_s=self.engine.config.client_timeout_s)

    async def GetTask(
        self, request: pb.TaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.TaskReply:
        client_id = await self._authenticate(request.credentials, context)
        give_up_at = self.clock() + self.long_poll_s
        while True:
            changed = self._changed
            now = self.clock()
            self.engine.tick(now)  # the driver lets time pass; the engine's poll only reads
            reply = self.engine.poll(client_id, now=now)
            self.notify()
            left = give_up_at - self.clock()
            if not isinstance(reply, Wait) or left <= 0:
                return convert.task_reply_to_proto(reply)
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                return convert.task_reply_to_proto(Wait(retry_after_s=0.0, reason=reply.reason))

    async def DownloadModel(
        self, request: pb.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes | pb.ModelChunk]:
        """Serialised `ModelChunk`s (see `chunks`), written without protobuf's payload copies
        (messages when registered through the generated `add_CoordinatorServicer_to_server`)."""
        client_id = await self._authenticate(request.credentials, context)
        self.tick()
        try:
            model = self.engine.model_for(client_id, request.task_id, now=self.clock())
        except EngineError as err:
            await _abort(context, err)
        spec: bytes | None = convert.spec_to_proto(model.spec).SerializeToString()
        for offset, views in iter_chunk_views(model.params, self.engine.config.chunk_bytes):
            yield self._out(encode_chunk_message(offset, views, head=spec))
            spec = None
        if spec is not None:  # an empty model still announces its (empty) spec
            yield self._out(encode_chunk_message(0, [], head=spec))

    async def SubmitResult(
        self,
        request_iterator: AsyncIterator[ResultPart | pb.ResultChunk],
        context: grpc.aio.ServicerContext,
    ) -> pb.SubmitReply:
        """A `ResultChunk` stream, read by `chunks.read_result_chunk` (payload as views) when
        registered through `add_to_server`."""
        messages = (as_result_part(msg) async for msg in request_iterator)
        first = await anext(messages, None)
        if first is None or first.header is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be a header")
            raise AssertionError("unreachable: abort raises")  # pragma: no cover
        client_id = await self._authenticate(first.header.credentials, context)
        self.tick()
        try:
            header = convert.result_header_from_proto(first.header)
            expected = self.engine.check_result(header, now=self.clock())
            assembler = PayloadAssembler(expected, max_bytes=self.engine.config.max_payload_bytes)
            async for msg in messages:
                if msg.data is None:
                    raise WireError("only chunks may follow the header")
                assembler.add(msg.offset, msg.data)
            tensors = assembler.finish()
            self.engine.submit(TaskResult(header=header, tensors=tensors), now=self.clock())
        except EngineError as err:
            log.info("result from %s refused: %s", client_id, err)
            await _abort(context, err)
        except PayloadTooLarge as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except WireError as err:
            log.info("malformed result from %s: %s", client_id, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.notify()
        return pb.SubmitReply(message="accepted")

    async def Leave(self, request: pb.LeaveRequest, context: grpc.aio.ServicerContext) -> pb.LeaveReply:
        client_id = await self._authenticate(request.credentials, context)
        self.engine.leave(client_id, now=self.clock())
        log.info("client %s left", client_id)
        self.notify()
        return pb.LeaveReply()

    # ----------------------------------------------------------------- helpers
    def tick(self) -> None:
        """Let the engine see the time pass (deadlines), waking long-polls on change."""
        self.engine.tick(self.clock())
        self.notify()

    def notify(self) -> None:
        """Wake waiting long-polls if the engine moved to a new task or phase."""
        state = self._snapshot()
        if state != self._state:
            self._state = state
            self._changed.set()
            self._changed = asyncio.Event()
            if self._on_change is not None:
                self._on_change()

    def _snapshot(self) -> tuple[object, ...]:
        return self.engine.progress

    async def _authenticate(
        self, credentials: pb.Credentials, context: grpc.aio.ServicerContext
    ) -> str:
        try:
            self.engine.authenticate(credentials.client_id, credentials.session, now=self.clock())
        except EngineError as err:
            await _abort(context, err)
        return credentials.client_id


def add_to_server(service: CoordinatorService, server: grpc.aio.Server) -> None:
    """Register `service` on `server`: the generated handlers, except that `DownloadModel` sends
    bytes `service` serialised itself and `SubmitResult` reads its stream with
    `read_result_chunk`, so model and result payloads skip protobuf's copies (same wire format).
    """
    handlers = {
        "Join": grpc.unary_unary_rpc_method_handler(
            service.Join,
            request_deserializer=pb.JoinRequest.FromString,
            response_serializer=pb.JoinReply.SerializeToString,
        ),
        "GetTask": grpc.unary_unary_rpc_method_handler(
            service.GetTask,
            request_deserializer=pb.TaskRequest.FromString,
            response_serializer=pb.TaskReply.SerializeToString,
        ),
        "DownloadModel": grpc.unary_stream_rpc_method_handler(
            service.DownloadModel,
            request_deserializer=pb.DownloadRequest.FromString,
            response_serializer=None,  # already serialised ModelChunks
        ),
        "SubmitResult": grpc.stream_unary_rpc_method_handler(
            service.SubmitResult,
            request_deserializer=read_result_chunk,
            response_serializer=pb.SubmitReply.SerializeToString,
        ),
        "Leave": grpc.unary_unary_rpc_method_handler(
            service.Leave,
            request_deserializer=pb.LeaveRequest.FromString,
            response_serializer=pb.LeaveReply.SerializeToString,
        ),
    }
    service._raw_chunks = True
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


async def _abort(context: grpc.aio.ServicerContext, err: EngineError) -> NoReturn:
    await context.abort(CODES[err.reason], str(err))
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
