"""A client written from docs/protocol.md sections 1-7 and the .proto files alone: generated
stubs, grpc and numpy, none of fedcore's client, wire or engine code. It does what the
conformance kit asks of a client under test (section 10) in plain rounds, and declines secure
ones.

    python raw_protocol_client.py ADDRESS CLIENT_ID TOKEN ADD EXAMPLES
"""

from __future__ import annotations

import random
import sys
import time

import grpc
import numpy as np

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb

DTYPES = {tpb.FLOAT32: "<f4", tpb.FLOAT64: "<f8", tpb.FLOAT16: "<f2", tpb.INT8: "i1",
          tpb.INT16: "<i2", tpb.INT32: "<i4", tpb.INT64: "<i8", tpb.UINT8: "u1",
          tpb.UINT16: "<u2", tpb.UINT32: "<u4", tpb.UINT64: "<u8", tpb.BOOL: "u1"}
REJOIN = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED)


def decode(spec: tpb.ModelSpec, payload: bytes) -> list[np.ndarray]:
    out, offset = [], 0
    for t in spec.tensors:  # section 5.1: C order, little-endian, concatenated
        dtype = np.dtype(DTYPES[t.dtype])
        n = int(np.prod(t.shape, dtype=np.int64)) * dtype.itemsize
        out.append(np.frombuffer(payload, dtype, n // dtype.itemsize, offset).reshape(t.shape))
        offset += n
    return out


class Client:
    def __init__(self, address: str, client_id: str, token: str, add: float, examples: int):
        self.stub = pb_grpc.CoordinatorStub(grpc.insecure_channel(address))
        self.client_id, self.token, self.add, self.examples = client_id, token, add, examples
        self.session, self.long_poll_s, self.attempt = b"", 0.0, 0

    def creds(self) -> pb.Credentials:
        return pb.Credentials(client_id=self.client_id, session=self.session)

    def backoff(self) -> None:  # section 6: full jitter, capped
        self.attempt += 1
        cap = min(10.0, 0.2 * 2 ** self.attempt)
        time.sleep(random.uniform(cap / 2, cap))

    def run(self) -> int:
        while True:
            try:
                if not self.session:
                    reply = self.stub.Join(pb.JoinRequest(
                        client_id=self.client_id, protocol_version=1, auth_token=self.token),
                        timeout=30)
                    self.session, self.long_poll_s = reply.session, reply.long_poll_s
                deadline = max(60.0, self.long_poll_s + 30.0)  # section 3.2
                reply = self.stub.GetTask(pb.TaskRequest(credentials=self.creds()),
                                          timeout=deadline)
                self.attempt = 0
                which = reply.WhichOneof("reply")
                if which == "done":
                    self.stub.Leave(pb.LeaveRequest(credentials=self.creds()), timeout=10)
                    return 0
                if which == "wait":
                    time.sleep(min(3600.0, max(0.0, reply.wait.retry_after_s)))
                    continue
                time.sleep(self.answer(reply.task))
            except grpc.RpcError as err:
                if err.code() in REJOIN:
                    self.session = b""
                elif err.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                    grpc.StatusCode.ALREADY_EXISTS):
                    continue  # the task is gone: drop it, poll again (section 6)
                elif err.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                    grpc.StatusCode.PERMISSION_DENIED):
                    return 3
                self.backoff()

    def answer(self, task: pb.Task) -> float:
        """Answer `task`; returns the reply's retry hint."""
        header = pb.ResultHeader(credentials=self.creds(), task_id=task.task_id)
        payload = b""
        if task.kind == pb.EVALUATE:
            header.num_examples, header.metrics["loss"] = self.examples, 0.0
        elif task.kind == pb.TRAIN and not task.HasField("secagg"):
            spec, data = None, bytearray()
            for chunk in self.stub.DownloadModel(pb.DownloadRequest(
                    credentials=self.creds(), task_id=task.task_id), timeout=60):
                if chunk.HasField("spec"):
                    spec = chunk.spec
                assert chunk.chunk.offset == len(data), "chunks arrive in order"
                data += chunk.chunk.data
            assert spec == task.model_spec, "the model is the task's"
            updates = []
            for g in decode(spec, bytes(data)):
                if g.dtype.kind == "f":  # section 5.3: local - global in the dtype
                    updates.append((g + np.asarray(self.add, g.dtype)) - g)
                else:
                    updates.append(np.zeros_like(g))
            payload = b"".join(u.astype(u.dtype.newbyteorder("<")).tobytes() for u in updates)
            header.num_examples = self.examples
            header.spec.CopyFrom(spec)
        else:  # INITIALIZE (no parameters of its own), secure rounds, unknown kinds
            header.declined_reason = "not supported by this client"

        def messages():
            yield pb.ResultChunk(header=header)
            if payload:  # one chunk: the kit's models are small
                yield pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=payload))

        return self.stub.SubmitResult(messages(), timeout=60).retry_after_s


if __name__ == "__main__":
    address, client_id, token, add, examples = sys.argv[1:6]
    sys.exit(Client(address, client_id, token, float(add), int(examples)).run())
