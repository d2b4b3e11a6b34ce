"""docs/protocol.md describes every field and value a client sees or sends, so a client can be
written from it and the .proto files alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from fedcore.proto.v1 import coordinator_pb2, secagg_pb2

DOC = Path(__file__).parents[3] / "docs" / "protocol.md"
MESSAGES = [
    coordinator_pb2.JoinRequest, coordinator_pb2.JoinReply, coordinator_pb2.Task,
    coordinator_pb2.TrainConfig, coordinator_pb2.LocalDP, coordinator_pb2.ResultHeader,
    coordinator_pb2.Wait, coordinator_pb2.Done, coordinator_pb2.Limits, coordinator_pb2.SubmitReply,
    secagg_pb2.SecAggServerMessage,
    secagg_pb2.SecAggClientMessage,
]
ENUMS = [coordinator_pb2.TaskKind]


def documented() -> set[str]:
    """Every inline code span of the page (fenced blocks left out)."""
    prose = re.sub(r"^```.*?^```", "", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
    return set(re.findall(r"`([^`\n]+)`", prose))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.DESCRIPTOR.name)
def test_every_field_is_documented(message: type) -> None:
    descriptor: Descriptor = message.DESCRIPTOR
    names = documented()
    # a field counts as documented when it appears in code font, alone or with its message
    missing = [f.name for f in descriptor.fields
               if not any(re.search(rf"(^|[.{{ ]){f.name}\b", n) for n in names)]
    assert not missing, f"docs/protocol.md does not mention {descriptor.name}.{missing}"


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.DESCRIPTOR.name)
def test_every_enum_value_is_documented(enum: type) -> None:
    descriptor: EnumDescriptor = enum.DESCRIPTOR
    values = [v.name for v in descriptor.values if not v.name.endswith("UNSPECIFIED")]
    missing = [v for v in values if v not in documented()]
    assert not missing, f"docs/protocol.md does not mention {descriptor.name} values {missing}"


def test_reserved_ranges_match_the_protos() -> None:
    text = DOC.read_text()
    for message in (coordinator_pb2.TrainConfig, coordinator_pb2.Task):
        descriptor = message.DESCRIPTOR
        used = sorted(f.number for f in descriptor.fields)
        block = re.search(rf"`{descriptor.name}` fields \*\*(\d+)–(\d+)\*\*", text)
        assert block, f"docs/protocol.md does not state {descriptor.name}'s reserved fields"
        low, high = int(block[1]), int(block[2])
        assert not any(low <= n <= high for n in used), (descriptor.name, used, low, high)
