"""What the coordinator's gRPC driver reports as it runs, to metrics, stores or logs.

The server calls an observer; it never knows what is behind it (Prometheus, SQLite, a test
double). `ObserverInterceptor` measures every RPC (status code, bytes in and out on the wire)
without the service's code knowing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

from fedcore.engine.records import RoundRecord

log = logging.getLogger(__name__)

JOIN_SUFFIX = "/Join"


class ServerObserver(Protocol):
    """Receives the coordinator's events. Methods are called on the server's event loop."""

    def rpc_finished(self, method: str, code: str) -> None:
        """An RPC ended with gRPC status `code` (e.g. "OK", "UNAUTHENTICATED")."""
        ...

    def bytes_transferred(self, method: str, *, received: int, sent: int) -> None:
        """Serialized message bytes received from / sent to a client."""
        ...

    def client_joined(self, client_id: str, peer: str) -> None:
        """A client joined (again); `peer` is its address, with its TLS identity if any."""
        ...

    def client_active(self, client_id: str) -> None:
        """A joined client's call (other than Join) succeeded: it is still there."""
        ...

    def engine_ticked(self, *, connected: int, outstanding: int, round_number: int) -> None:
        """The periodic tick: clients available, tasks still outstanding, the round number."""
        ...

    def round_completed(self, record: RoundRecord) -> None:
        """A round finished (successfully or not)."""
        ...

    def secagg_phase_finished(self, phase: str, seconds: float) -> None:
        """A secure-aggregation phase of the current round took `seconds`."""
        ...


class Observers:
    """Several observers as one. Each may implement any subset of `ServerObserver`'s methods;
    one that raises is logged and skipped, so an observer never breaks the coordinator."""

    def __init__(self, *observers: object) -> None:
        self._observers = observers

    def __getattr__(self, name: str) -> Callable[..., None]:
        def fan_out(*args: Any, **kwargs: Any) -> None:
            for observer in self._observers:
                method = getattr(observer, name, None)
                if method is None:
                    continue
                try:
                    method(*args, **kwargs)
                except Exception:
                    log.exception("observer %s failed in %s", type(observer).__name__, name)

        return fan_out


class ObserverInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Reports each RPC's status code and wire bytes to `observer`."""

    def __init__(self, observer: ServerObserver) -> None:
        self._observer = observer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        behaviour_name = _behaviour_name(handler)
        behaviour = getattr(handler, behaviour_name)
        return handler._replace(  # RpcMethodHandler is a namedtuple
            request_deserializer=self._counting_in(method, handler.request_deserializer),
            response_serializer=self._counting_out(method, handler.response_serializer),
            **{behaviour_name: self._wrap(method, behaviour)},
        )

    def _counting_in(self, method: str, deserialize: Callable[[bytes], Any] | None) -> Any:
        def counted(raw: bytes) -> Any:
            self._observer.bytes_transferred(method, received=len(raw), sent=0)
            return deserialize(raw) if deserialize else raw

        return counted

    def _counting_out(self, method: str, serialize: Callable[[Any], bytes] | None) -> Any:
        def counted(message: Any) -> bytes:
            raw = serialize(message) if serialize else message
            self._observer.bytes_transferred(method, received=0, sent=len(raw))
            return raw

        return counted

    def _wrap(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        observer = self._observer

        def finish(request: Any, context: grpc.aio.ServicerContext, completed: bool) -> None:
            code = _status(context, completed)
            observer.rpc_finished(method, code)
            if code == "OK" and method.endswith(JOIN_SUFFIX):
                observer.client_joined(getattr(request, "client_id", ""), _peer(context))
            elif code == "OK" and (client_id := _caller(request)):
                active = getattr(observer, "client_active", None)  # newer than some observers
                if active is not None:
                    active(client_id)

        if inspect.isasyncgenfunction(behaviour):

            async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                completed = False
                try:
                    async for message in behaviour(request, context):
                        yield message
                    completed = True
                finally:
                    finish(request, context, completed)

            return streaming

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            completed = False
            try:
                reply = await behaviour(request, context)
                completed = True
                return reply
            finally:
                finish(request, context, completed)

        return unary


def _behaviour_name(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "stream_stream" if handler.response_streaming else "stream_unary"
    return "unary_stream" if handler.response_streaming else "unary_unary"


def _caller(request: Any) -> str:
    """The client id a unary request's credentials name ("" for none, or a stream)."""
    return str(getattr(getattr(request, "credentials", None), "client_id", ""))


def _status(context: grpc.aio.ServicerContext, completed: bool) -> str:
    """The call's status code name: what the handler set, else OK or UNKNOWN (it raised)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK" if completed else "UNKNOWN"


def _peer(context: grpc.aio.ServicerContext) -> str:
    """The peer address, plus the common name of its TLS certificate when it presented one."""
    peer = context.peer() or ""
    names = context.auth_context().get("x509_common_name", [])
    return f"{peer} ({names[0].decode(errors='replace')})" if names else peer
