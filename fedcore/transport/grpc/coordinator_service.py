"""The Coordinator gRPC service: translate protos, call the round engine, map refusals.

Runs on one asyncio event loop, which serialises every engine call: the engine needs no lock.
Clients are untrusted (docs/reliability.md): bytes that do not decode are refused with
INVALID_ARGUMENT (`malformed`), uploads are bounded by `fedcore.engine.config.Limits`
(`uploads`: one per client and task, a global byte budget, an idle deadline, buffers dropped
the moment an upload ends), and refusals a client can repeat at will are logged rate-limited.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.config import Limits
from fedcore.engine.engine import RoundEngine
from fedcore.engine.errors import EngineError
from fedcore.errors import FedcoreError
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.messages import (
    CoordinatorLimits,
    JoinReply,
    ResultHeader,
    SubmitReply,
    TaskReply,
    TaskResult,
    Wait,
)
from fedcore.protocol.params import Array
from fedcore.transport.grpc.chunks import (
    ResultPart,
    as_result_part,
    encode_chunk_message,
    read_result_chunk,
)
from fedcore.transport.grpc.malformed import Malformed, RateLimitedLog, tolerant
from fedcore.transport.grpc.status import CODES
from fedcore.transport.grpc.tls import bound_id_refusal, peer_identities
from fedcore.transport.grpc.uploads import Upload, UploadBook, UploadBusy
from fedcore.wire import convert
from fedcore.wire.tensor import iter_chunk_views

log = logging.getLogger(__name__)

SERVICE_NAME = "fedcore.v1.Coordinator"
WRONG_TOKEN = ("wrong or missing auth token: give the client the coordinator's token file "
               "(fedcore client --auth-token-file FILE; run_client(auth_token=...))")

Clock = Callable[[], float]


class Refused(FedcoreError):
    """An upload refused with `code`; raised inside `SubmitResult`, answered outside it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """Thin gRPC adapter around a `RoundEngine` (or a FedBuff `BufferedCoordinator`).

    `GetTask` long-polls: a client told to wait is held for up to `long_poll_s` until the engine
    changes (a round opens), so rounds start without polling delay. One poll per client is
    held; another from the same client meanwhile is answered at once (with the engine's wait).
    """

    def __init__(
        self,
        engine: RoundEngine | BufferedCoordinator,
        *,
        clock: Clock = time.monotonic,
        long_poll_s: float = 5.0,
        auth_token: str = "",
        on_change: Callable[[], None] | None = None,
        bind_client_ids: bool = False,
        max_message_bytes: int = 0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.long_poll_s = long_poll_s
        self.max_message_bytes = max_message_bytes  # the server's gRPC limit, told on Join
        self._auth_token = auth_token
        self._bind_client_ids = bind_client_ids  # mTLS: a client joins only as its cert names
        self._on_change = on_change
        self._changed = asyncio.Event()
        self._state = self._snapshot()
        self._raw_chunks = False  # set by `add_to_server`: DownloadModel's serialiser passes bytes
        self._uploads = UploadBook(engine.config.limits)
        self._polling: set[str] = set()  # clients with a GetTask held
        self._downloads: set[tuple[str, str]] = set()  # (client, task) downloads in progress
        self._refusals = RateLimitedLog(log, clock)

    @property
    def limits(self) -> Limits:
        """The bounds on what clients send (the engine's)."""
        return self.engine.config.limits

    @property
    def uploads(self) -> UploadBook:
        """The uploads in progress."""
        return self._uploads

    @property
    def downloads(self) -> frozenset[tuple[str, str]]:
        """(client, task) of the model downloads in progress."""
        return frozenset(self._downloads)

    @property
    def held_polls(self) -> frozenset[str]:
        """Clients whose `GetTask` is held now."""
        return frozenset(self._polling)

    def _out(self, chunk: bytes) -> bytes | pb.ModelChunk:
        return chunk if self._raw_chunks else pb.ModelChunk.FromString(chunk)

    # ----------------------------------------------------------------- RPCs
    async def Join(self, request: pb.JoinRequest, context: grpc.aio.ServicerContext) -> pb.JoinReply:
        if self._auth_token and not hmac.compare_digest(
            request.auth_token.encode(), self._auth_token.encode()
        ):
            self._refusals.report("join refused", "bad auth token from %s", context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, WRONG_TOKEN)
        if self._bind_client_ids and (refusal := bound_id_refusal(
                request.client_id, peer_identities(context.auth_context()))):
            self._refusals.report("join refused", "%s from %s", refusal, context.peer())
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        try:
            session = self.engine.join(
                request.client_id,
                now=self.clock(),
                protocol_version=request.protocol_version,
                properties=dict(request.properties),
            )
        except EngineError as err:
            self._refusals.report("join refused", "%s from %s", err, context.peer())
            await _abort(context, err)
        log.info("client %s joined", request.client_id)
        self.notify()
        return convert.join_reply_to_proto(self._join_reply(session))

    async def GetTask(
        self, request: pb.TaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.TaskReply:
        client_id = await self._authenticate(request.credentials, context)
        if client_id in self._polling:  # one held poll per client: this one is answered at once
            return convert.task_reply_to_proto(self._poll(client_id))
        self._polling.add(client_id)
        try:
            return convert.task_reply_to_proto(await self._long_poll(client_id))
        finally:
            self._polling.discard(client_id)

    async def _long_poll(self, client_id: str) -> TaskReply:
        give_up_at = self.clock() + self.long_poll_s
        while True:
            changed = self._changed
            reply = self._poll(client_id)
            left = give_up_at - self.clock()
            if not isinstance(reply, Wait) or left <= 0:
                return reply
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                return Wait(retry_after_s=0.0, reason=reply.reason)

    def _poll(self, client_id: str) -> TaskReply:
        now = self.clock()
        self.engine.tick(now)  # the driver lets time pass; the engine's poll only reads
        reply = self.engine.poll(client_id, now=now)
        self.notify()
        return reply

    async def DownloadModel(
        self, request: pb.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes | pb.ModelChunk]:
        """Serialised `ModelChunk`s (see `chunks`), written without protobuf's payload copies
        (messages when registered through the generated `add_CoordinatorServicer_to_server`).
        One download per client and task at a time (another meanwhile: ALREADY_EXISTS), so a
        client cannot pile up stalled downloads, each holding a chunk."""
        client_id = await self._authenticate(request.credentials, context)
        self.tick()
        try:
            model = self.engine.model_for(client_id, request.task_id, now=self.clock())
        except EngineError as err:
            await _abort(context, err)
        key = (client_id, request.task_id)
        if key in self._downloads:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                f"{client_id!r} is already downloading {request.task_id}: one "
                                "download at a time")
        self._downloads.add(key)
        try:
            spec: bytes | None = convert.spec_to_proto(model.spec).SerializeToString()
            for offset, views in iter_chunk_views(model.params, self.engine.config.chunk_bytes):
                yield self._out(encode_chunk_message(offset, views, head=spec))
                spec = None
            if spec is not None:  # an empty model still announces its (empty) spec
                yield self._out(encode_chunk_message(0, [], head=spec))
        finally:
            self._downloads.discard(key)

    async def SubmitResult(
        self,
        request_iterator: AsyncIterator[ResultPart | pb.ResultChunk | Malformed],
        context: grpc.aio.ServicerContext,
    ) -> pb.SubmitReply:
        """A `ResultChunk` stream, read by `chunks.read_result_chunk` (payload as views) when
        registered through `add_to_server`. Bounded by `limits` (see `uploads`)."""
        try:
            retry_after_s = await self._receive(aiter(request_iterator))
        except Refused as err:
            code, details = err.code, err.details  # not the exception: it would hold this frame
        else:
            self.notify()
            return convert.submit_reply_to_proto(SubmitReply(retry_after_s=retry_after_s))
        await context.abort(code, details)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def _receive(self, messages: AsyncIterator[ResultPart | pb.ResultChunk | Malformed]) -> float:
        """Read, check and submit one result; raises `Refused`. Holds the payload buffer only
        while it runs: it is dropped on every way out, and the refusal is raised outside the
        `except` clause, so it carries no traceback of frames that saw the buffer. Returns the
        reply's retry hint: 0 (poll at once) for a result; for a decline, how long the engine
        wants the client to wait (`RoundEngine.retry_after`: what is left of an INITIALIZE
        backoff, else `retry_after_s`)."""
        declined = False
        idle_s = self.limits.upload_idle_s
        upload: Upload | None = None
        tensors: dict[str, Array] | None = None
        refused: Refused | None = None
        try:
            async with asyncio.timeout(idle_s) as deadline:
                header, client_id = self._header(await self._next(messages, deadline, idle_s))
                declined = bool(header.declined_reason)
                expected = self.engine.check_result(header, now=self.clock())
                if expected.nbytes > self.engine.config.max_payload_bytes:
                    raise PayloadTooLarge(
                        f"payload of {expected.nbytes} bytes exceeds max_payload_bytes "
                        f"({self.engine.config.max_payload_bytes})")
                upload = self._uploads.open(client_id, header.task_id, expected, deadline)
                while (part := await self._next(messages, deadline, idle_s)) is not None:
                    if upload.ended_by:  # ended while this message was on its way
                        raise TimeoutError
                    if part.data is None:
                        raise WireError("only chunks may follow the header")
                    if declined:
                        raise WireError("a declined result carries no payload: send the header alone")
                    upload.add(part.offset, part.data)
                    del part  # a view of the message: hold no received bytes while waiting
                tensors = upload.finish()
                self.engine.submit(TaskResult(header=header, tensors=tensors), now=self.clock())
        except Refused as err:
            refused = Refused(err.code, err.details)
        except TimeoutError:
            refused = self._timed_out(upload, idle_s)
        except EngineError as err:
            self._refusals.report("result refused", "%s", err)
            refused = Refused(CODES[err.reason], str(err))
        except UploadBusy as err:
            refused = Refused(grpc.StatusCode.ALREADY_EXISTS, str(err))
        except PayloadTooLarge as err:
            self._refusals.report("upload refused", "%s", err)
            refused = Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except WireError as err:
            self._refusals.report("malformed result", "%s", err)
            refused = Refused(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        finally:
            if upload is not None:
                self._uploads.close(upload)
            upload = tensors = None
        if refused is not None:
            raise refused
        return self.engine.retry_after(client_id, now=self.clock()) if declined else 0.0

    async def _next(
        self,
        messages: AsyncIterator[ResultPart | pb.ResultChunk | Malformed],
        deadline: asyncio.Timeout,
        idle_s: float,
    ) -> ResultPart | None:
        """The stream's next message (None at its end), within `idle_s` of the previous one."""
        msg = await anext(messages, None)
        if isinstance(msg, Malformed):
            self._refusals.report("malformed request", "SubmitResult: %d bytes that do not "
                                   "decode (%s)", msg.size, msg.error)
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request is not a valid SubmitResult message: {msg.error}")
        deadline.reschedule(asyncio.get_running_loop().time() + idle_s)
        return None if msg is None else as_result_part(msg)

    def _header(self, first: ResultPart | None) -> tuple[ResultHeader, str]:
        """The upload's header, checked: credentials, then limits on metrics."""
        if first is None or first.header is None:
            raise WireError("first message must be a header")
        credentials = first.header.credentials
        try:
            self.engine.authenticate(credentials.client_id, credentials.session, now=self.clock())
        except EngineError as err:
            raise Refused(CODES[err.reason], str(err)) from None
        self.tick()
        header = convert.result_header_from_proto(first.header)
        limits = self.limits
        if len(header.metrics) > limits.max_metrics:
            raise WireError(f"{len(header.metrics)} metrics, at most {limits.max_metrics} "
                            "allowed (limits.max_metrics)")
        longest = max(map(len, header.metrics), default=0)
        if longest > limits.max_metric_key_chars:
            raise WireError(f"a metric name of {longest} characters, at most "
                            f"{limits.max_metric_key_chars} allowed (limits.max_metric_key_chars)")
        return header, credentials.client_id

    def _timed_out(self, upload: Upload | None, idle_s: float) -> Refused:
        if upload is not None and upload.ended_by:
            return Refused(grpc.StatusCode.FAILED_PRECONDITION,
                           f"upload for {upload.task_id} ended: {upload.ended_by}")
        self._refusals.report("upload stalled", "no data for %gs", idle_s)
        return Refused(grpc.StatusCode.DEADLINE_EXCEEDED,
                       f"no data for {idle_s:g}s (limits.upload_idle_s): the upload was aborted")

    async def Leave(self, request: pb.LeaveRequest, context: grpc.aio.ServicerContext) -> pb.LeaveReply:
        client_id = await self._authenticate(request.credentials, context)
        self.engine.leave(client_id, now=self.clock())
        self._uploads.cancel_client(client_id, "the client left")
        log.info("client %s left", client_id)
        self.notify()
        return pb.LeaveReply()

    # ----------------------------------------------------------------- helpers
    def _join_reply(self, session: bytes) -> JoinReply:
        """The session, the long-poll hold and the limits a client should know."""
        config, limits = self.engine.config, self.limits
        return JoinReply(
            session=session, client_timeout_s=config.client_timeout_s, long_poll_s=self.long_poll_s,
            limits=CoordinatorLimits(
                max_message_bytes=self.max_message_bytes, max_payload_bytes=config.max_payload_bytes,
                chunk_bytes=config.chunk_bytes, min_chunk_bytes=limits.min_chunk_bytes,
                max_metrics=limits.max_metrics, max_metric_key_chars=limits.max_metric_key_chars,
                max_client_id_bytes=limits.max_client_id_chars,
            ),
        )

    async def refuse_malformed(
        self, method: str, request: Malformed, context: grpc.aio.ServicerContext
    ) -> NoReturn:
        """Answer a request that did not decode: INVALID_ARGUMENT, one rate-limited log line."""
        self._refusals.report("malformed request", "%s from %s: %d bytes that do not decode (%s)",
                               method, context.peer(), request.size, request.error)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid {method} message: {request.error}")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def tick(self) -> None:
        """Let the engine see the time pass (deadlines), waking long-polls on change."""
        self.engine.tick(self.clock())
        self.notify()

    def notify(self) -> None:
        """Wake waiting long-polls if the engine moved to a new task or phase; end uploads for
        a task that closed."""
        state = self._snapshot()
        if state != self._state:
            self._state = state
            if len(self._uploads):
                self._uploads.end_closed(self.engine.is_task_open, "its task closed")
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
    Every deserializer is `tolerant`: bytes that do not decode get INVALID_ARGUMENT, and so do
    requests other than `SubmitResult` beyond `small_request_bytes`, before they are parsed.
    """
    small = small_request_bytes(service.limits)
    handlers = {
        "Join": grpc.unary_unary_rpc_method_handler(
            _guarded(service, "Join", service.Join),
            request_deserializer=tolerant(pb.JoinRequest.FromString, small),
            response_serializer=pb.JoinReply.SerializeToString,
        ),
        "GetTask": grpc.unary_unary_rpc_method_handler(
            _guarded(service, "GetTask", service.GetTask),
            request_deserializer=tolerant(pb.TaskRequest.FromString, small),
            response_serializer=pb.TaskReply.SerializeToString,
        ),
        "DownloadModel": grpc.unary_stream_rpc_method_handler(
            _guarded_stream(service, "DownloadModel", service.DownloadModel),
            request_deserializer=tolerant(pb.DownloadRequest.FromString, small),
            response_serializer=None,  # already serialised ModelChunks
        ),
        "SubmitResult": grpc.stream_unary_rpc_method_handler(
            service.SubmitResult,  # refuses a `Malformed` part itself
            request_deserializer=tolerant(read_result_chunk),
            response_serializer=pb.SubmitReply.SerializeToString,
        ),
        "Leave": grpc.unary_unary_rpc_method_handler(
            _guarded(service, "Leave", service.Leave),
            request_deserializer=tolerant(pb.LeaveRequest.FromString, small),
            response_serializer=pb.LeaveReply.SerializeToString,
        ),
    }
    service._raw_chunks = True
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def small_request_bytes(limits: Limits) -> int:
    """The largest `Join`, `GetTask`, `DownloadModel` or `Leave` request accepted: room for the
    largest properties, id and token `limits` allow (requests of a few hundred bytes, otherwise)."""
    return 65536 + 2 * limits.max_properties_bytes + 8 * limits.max_client_id_chars


HEALTH_SERVICE = "grpc.health.v1.Health"


def add_health_to_server(
    service: CoordinatorService, health_servicer: health.aio.HealthServicer, server: grpc.aio.Server
) -> None:
    """Register the standard gRPC health service with `tolerant` deserializers: bytes that do not
    decode get INVALID_ARGUMENT and `service`'s rate-limited log line, as on the coordinator."""
    parse = tolerant(health_pb2.HealthCheckRequest.FromString, 4096)
    reply = health_pb2.HealthCheckResponse.SerializeToString
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            _guarded(service, "Check", health_servicer.Check),
            request_deserializer=parse, response_serializer=reply,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(  # a coroutine writing with context.write
            _guarded(service, "Watch", health_servicer.Watch),
            request_deserializer=parse, response_serializer=reply,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(HEALTH_SERVICE, handlers),))


Request = TypeVar("Request")
Reply = TypeVar("Reply")


def _guarded(
    service: CoordinatorService, name: str,
    method: Callable[[Request, grpc.aio.ServicerContext], Awaitable[Reply]],
) -> Callable[[Request | Malformed, grpc.aio.ServicerContext], Awaitable[Reply]]:
    """`method`, refusing a request that did not decode before it runs."""

    async def unary(request: Request | Malformed, context: grpc.aio.ServicerContext) -> Reply:
        if isinstance(request, Malformed):
            await service.refuse_malformed(name, request, context)
        return await method(request, context)

    return unary


def _guarded_stream(
    service: CoordinatorService, name: str,
    method: Callable[[Request, grpc.aio.ServicerContext], AsyncIterator[Reply]],
) -> Callable[[Request | Malformed, grpc.aio.ServicerContext], AsyncIterator[Reply]]:
    """`_guarded` for a method that streams its replies."""

    async def streaming(
        request: Request | Malformed, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Reply]:
        if isinstance(request, Malformed):
            await service.refuse_malformed(name, request, context)
        async for reply in method(request, context):
            yield reply

    return streaming


async def _abort(context: grpc.aio.ServicerContext, err: EngineError) -> NoReturn:
    await context.abort(CODES[err.reason], str(err))
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
