"""The client's side of the wire: one method per RPC, dataclasses in and out.

Failed calls raise `fedcore.client.connection_errors` types (what the failure means to the client:
task refused, client rejected, session lost, unreachable), which are `grpc.RpcError`s too, with
the status code and details, for callers that speak gRPC.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from fedcore.client import connection_errors as errors
from fedcore.client.connection_errors import StopRequested, TransportError
from fedcore.errors import FedcoreError
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    PROTOCOL_VERSION,
    CoordinatorLimits,
    SubmitReply,
    Task,
    TaskReply,
    TaskResult,
)
from fedcore.protocol.params import Array
from fedcore.protocol.specs import check_matches
from fedcore.transport.grpc.chunks import encode_chunk_message, read_model_chunk
from fedcore.transport.grpc.status import client_failure
from fedcore.transport.probe import diagnose
from fedcore.wire import convert
from fedcore.wire.tensor import DEFAULT_CHUNK_BYTES, PayloadAssembler, iter_chunk_views

MAX_MESSAGE_BYTES = 8 << 20
# After this many failed joins in a row (and every 10 more), the connection probes the address
# and logs the likely cause: nothing listening, TLS on one side only, a name that does not resolve.
DIAGNOSE_AFTER = 3

log = logging.getLogger(__name__)

__all__ = ["GrpcConnection", "StopRequested"]


class _GrpcStatus(FedcoreError, grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    """A typed failure that still answers as the `grpc.RpcError` it came from."""

    status: str
    reason: str

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode[self.status]

    def details(self) -> str:
        return self.reason


_AS_RPC_ERROR: dict[type[TransportError], type[TransportError]] = {
    kind: type(kind.__name__, (kind, _GrpcStatus), {"__module__": __name__})
    for kind in (TransportError, errors.TaskRefused, errors.ClientRejected, errors.SessionLost,
                 errors.Unreachable, errors.Disconnected)
}


class GrpcConnection:
    """A client's channel to the coordinator and its session.

    Args:
        address: host:port of the coordinator.
        client_id: this client's stable identity.
        auth_token: shared token when the coordinator requires one.
        credentials: TLS channel credentials; None for plaintext.
        chunk_bytes: upload chunk size.
        rpc_timeout_s: deadline for unary calls other than the long-poll.
    """

    def __init__(
        self,
        address: str,
        *,
        client_id: str,
        auth_token: str = "",
        credentials: grpc.ChannelCredentials | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        rpc_timeout_s: float = 30.0,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address, options=options)
        )
        self._stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
        # Model and result chunks skip protobuf's payload copies (same wire format; see `chunks`).
        self._download = self._channel.unary_stream(
            "/fedcore.v1.Coordinator/DownloadModel",
            request_serializer=pb.DownloadRequest.SerializeToString,
            response_deserializer=read_model_chunk,
        )
        self._submit = self._channel.stream_unary(
            "/fedcore.v1.Coordinator/SubmitResult",
            request_serializer=None,  # already serialised
            response_deserializer=pb.SubmitReply.FromString,
        )
        self.client_id = client_id
        self._auth_token = auth_token
        self._chunk_bytes = chunk_bytes
        self._timeout = rpc_timeout_s
        self.session = b""
        self.long_poll_s = 0.0  # the coordinator's GetTask hold, from its JoinReply (0: not stated)
        self.limits = CoordinatorLimits()
        self._lock = threading.Lock()
        self._inflight: grpc.Future | None = None
        self.address = address
        self._tls = credentials is not None
        self._join_failures = 0
        self._likely_cause = ""

    @property
    def joined(self) -> bool:
        """Whether a session is held."""
        return bool(self.session)

    def join(
        self, properties: dict[str, str] | None = None, stop: threading.Event | None = None
    ) -> None:
        """Register with the coordinator and keep the session.

        Raises:
            Disconnected: the coordinator cannot be reached; after a few failures in a row its
                reason ends with the likely cause (see `fedcore.transport.probe.diagnose`).
        """
        if not self._join_failures:
            log.info("%s: connecting to %s (%s)", self.client_id, self.address,
                     "TLS" if self._tls else "plaintext")
        future = self._stub.Join.future(
            pb.JoinRequest(
                client_id=self.client_id,
                protocol_version=PROTOCOL_VERSION,
                auth_token=self._auth_token,
                properties=properties or {},
            ),
            timeout=self._timeout,
        )
        try:
            reply = convert.join_reply_from_proto(self._await(future, stop, "joining"))
        except errors.Unreachable as err:
            raise self._explained(err) from err
        self.session = reply.session
        self.long_poll_s, self.limits = reply.long_poll_s, reply.limits
        self._join_failures = 0
        self._likely_cause = ""

    def get_task(
        self, stop: threading.Event | None = None, timeout_s: float | None = None
    ) -> TaskReply:
        """Ask for work (the coordinator may hold the call while it waits for a round).

        The deadline defaults to 60 s, or the coordinator's stated long-poll hold plus
        `rpc_timeout_s` when that is longer, so a held call is never cut short."""
        if timeout_s is None:
            timeout_s = max(60.0, self.long_poll_s + self._timeout)
        request = pb.TaskRequest(credentials=self._credentials())
        future = self._stub.GetTask.future(request, timeout=timeout_s)
        return convert.task_reply_from_proto(self._await(future, stop, "waiting for work"))

    def download(self, task: Task, stop: threading.Event | None = None) -> dict[str, Array]:
        """The task's global model, reassembled from its chunks and checked against the task."""
        with self._typed_failures():
            stream = self._download(
                pb.DownloadRequest(credentials=self._credentials(), task_id=task.task_id),
                timeout=self._timeout + task.time_left_s,
            )
            self._track(stream)
            try:
                assembler: PayloadAssembler | None = self._stopped_if_cancelled(
                    lambda: self._assemble(stream, task, stop), stop, "downloading the model"
                )
            finally:
                self._track(None)
        if assembler is None:
            raise WireError("the coordinator sent no model")
        return assembler.finish()

    @staticmethod
    def _assemble(stream: Any, task: Task, stop: threading.Event | None) -> PayloadAssembler | None:
        assembler: PayloadAssembler | None = None
        for msg in stream:
            if stop is not None and stop.is_set():
                stream.cancel()
                raise StopRequested("stopped while downloading the model")
            if assembler is None:
                spec = convert.spec_from_proto(msg.spec or tpb.ModelSpec())
                check_matches(spec, task.model_spec)
                assembler = PayloadAssembler(spec)
            assembler.add(msg.offset, msg.data)
        return assembler

    def submit(self, result: TaskResult, stop: threading.Event | None = None) -> SubmitReply:
        """Stream a result: the header, then the tensors in chunks; returns the retry hint."""
        header = convert.result_header_to_proto(result.header, self.session)

        def messages() -> Iterator[bytes]:  # serialised ResultChunks, see `chunks`
            yield pb.ResultChunk(header=header).SerializeToString()
            for offset, pieces in iter_chunk_views(result.tensors, self._chunk_bytes):
                yield encode_chunk_message(offset, pieces)

        future = self._submit.future(messages(), timeout=self._timeout + 600.0)
        return convert.submit_reply_from_proto(self._await(future, stop, "uploading the result"))

    def cancel_current(self) -> None:
        """Cancel the call in flight, if any (from any thread); it raises `StopRequested`
        when the stop event given to it is set, `Unreachable` (CANCELLED) otherwise."""
        with self._lock:
            call = self._inflight
        if call is not None:
            call.cancel()

    def leave(self) -> None:
        """Tell the coordinator this client is going (best effort)."""
        if self.session:
            with self._typed_failures():
                self._stub.Leave(pb.LeaveRequest(credentials=self._credentials()), timeout=5.0)
            self.session = b""

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _await(self, future: grpc.Future, stop: threading.Event | None, doing: str) -> Any:
        """The future's result; cancels it and raises `StopRequested` when `stop` is set."""
        self._track(future)
        try:
            if stop is not None:
                answered = threading.Event()
                future.add_done_callback(lambda _: answered.set())
                while not answered.wait(0.05):
                    if stop.is_set():
                        future.cancel()
                        raise StopRequested(f"stopped while {doing}")
            with self._typed_failures():
                return self._stopped_if_cancelled(future.result, stop, doing)
        except grpc.FutureCancelledError as err:
            raise StopRequested(f"cancelled while {doing}") from err
        finally:
            self._track(None)

    @staticmethod
    def _stopped_if_cancelled(
        call: Callable[[], Any], stop: threading.Event | None, doing: str
    ) -> Any:
        """`call()`, with a cancellation caused by `stop` raised as `StopRequested`."""
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.CANCELLED and stop is not None and stop.is_set():
                raise StopRequested(f"stopped while {doing}") from err
            raise

    @contextlib.contextmanager
    def _typed_failures(self) -> Iterator[None]:
        """Re-raise a failed call as the `TransportError` its status means to this client."""
        try:
            yield
        except TransportError:
            raise
        except grpc.RpcError as err:
            code = err.code()
            kind = _AS_RPC_ERROR[client_failure(code, joined=self.joined)]
            raise kind(code.name, err.details() or "") from err

    def _explained(self, err: errors.Unreachable) -> errors.Unreachable:
        """`err`, with the likely cause of the failures so far once there have been a few."""
        self._join_failures += 1
        if self._join_failures % 10 == DIAGNOSE_AFTER:
            self._likely_cause = diagnose(self.address, tls=self._tls, timeout_s=1.0)
            log.warning("%s: cannot reach the coordinator (%d attempts): %s", self.client_id,
                        self._join_failures, self._likely_cause)
        if not self._likely_cause:
            return err
        return type(err)(err.status, f"{err.reason} (likely cause: {self._likely_cause})")

    def _track(self, call: grpc.Future | None) -> None:
        with self._lock:
            self._inflight = call

    def _credentials(self) -> pb.Credentials:
        return pb.Credentials(client_id=self.client_id, session=self.session)
