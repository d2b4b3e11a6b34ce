"""docs/protocol.md sections 1 and 6 stay in step with the code: the status table names tests
that exist, every code the coordinator maps a refusal to is in the table, and the health
service the page shows is the one the runtime serves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from grpc_health.v1 import health_pb2

from fedcore.transport.grpc.status import CODES

ROOT = Path(__file__).parents[3]
DOC = (ROOT / "docs" / "protocol.md").read_text()
STATUS_TESTS = ROOT / "tests" / "integration" / "test_status_codes.py"


def section(number: int) -> str:
    start = DOC.index(f"\n## {number}. ")
    return DOC[start:DOC.index("\n## ", start + 1)]


def table_rows() -> list[list[str]]:
    rows = [line.split(" | ") for line in section(6).splitlines() if line.startswith("| `")]
    assert rows, "section 6 has no status table"
    return rows


def test_every_test_the_status_table_names_exists() -> None:
    defined = {node.name for node in ast.walk(ast.parse(STATUS_TESTS.read_text()))
               if isinstance(node, ast.FunctionDef)}
    named = {name for row in table_rows() for name in re.findall(r"`(test_\w+)`", row[-1])}

    assert named, "the status table names no tests"
    assert not named - defined, f"the table names tests that do not exist: {named - defined}"


def test_tests_named_with_their_file_exist() -> None:
    named = [m for row in table_rows() for m in re.findall(r"`(test_\w+\.py)::(test_\w+)`", row[-1])]

    assert named, "the table names no test of another file"
    for file, name in named:
        source = (ROOT / "tests" / "integration" / file).read_text()
        assert f"def {name}(" in source, f"{file}::{name} does not exist"


def test_every_status_test_is_named_in_the_table() -> None:
    named = {name for row in table_rows() for name in re.findall(r"`(test_\w+)`", row[-1])}
    defined = {node.name for node in ast.walk(ast.parse(STATUS_TESTS.read_text()))
               if isinstance(node, ast.FunctionDef) and node.name.startswith(
                   ("test_unauthenticated", "test_not_found", "test_failed_precondition",
                    "test_already_exists", "test_invalid_argument", "test_resource_exhausted",
                    "test_permission_denied", "test_unavailable"))}

    assert not defined - named, f"status tests missing from the table: {defined - named}"


def test_every_code_a_refusal_maps_to_is_in_the_table() -> None:
    in_table = {code for row in table_rows() for code in re.findall(r"`([A-Z_]+)`", row[0])}

    missing = {code.name for code in CODES.values()} - in_table
    assert not missing, f"section 6 does not list {missing}"


def test_the_health_service_shown_is_the_one_served() -> None:
    shown = section(1)
    messages = health_pb2.DESCRIPTOR.message_types_by_name.values()
    response = health_pb2.HealthCheckResponse.DESCRIPTOR

    for message in messages:
        assert f"message {message.name} " in shown, message.name
        for field in message.fields:
            assert re.search(rf"\b{field.name} = {field.number};", shown), field.name
    for value in response.enum_types_by_name["ServingStatus"].values:
        assert f"{value.name} = {value.number};" in shown, value.name
    for method in health_pb2.DESCRIPTOR.services_by_name["Health"].methods:
        assert f"rpc {method.name}(" in shown, method.name
