"""The conformance kit (`python -m fedcore.conformance`) against fedcore's reference client,
which must pass every requirement, and against deliberately broken clients, whose flaw the
report must name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedcore.conformance.__main__ import main
from fedcore.conformance.harness import ClientCommand, CommandError
from fedcore.conformance.runner import passed, run_kit, table
from fedcore.conformance.scenarios import REQUIREMENTS, SCENARIOS

pytestmark = pytest.mark.timeout(180)

REFERENCE = (f"{sys.executable} -m fedcore.conformance.reference_client {{address}} "
             "{client_id} --token {token} --add {add} --examples {examples}")
BROKEN = (f"{sys.executable} {Path(__file__).with_name('broken_conformance_client.py')} "
          "--flaw {flaw} {{address}} {{client_id}} --token {{token}} --add {{add}} "
          "--examples {{examples}}")


def _kit(log_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedcore.conformance", "--log-dir",
                           str(log_dir), *args],
                          check=False, capture_output=True, text=True, timeout=150)


def test_the_reference_client_passes_every_requirement_of_every_scenario(tmp_path: Path) -> None:
    # act
    outcomes = run_kit(ClientCommand(REFERENCE), log_dir=tmp_path)

    # assert: every scenario ran, every requirement was checked and passed
    report = table(outcomes)
    assert passed(outcomes), report
    assert {o.scenario for o in outcomes} == set(SCENARIOS)
    assert {o.requirement.id for o in outcomes} == set(REQUIREMENTS), report
    assert "0 of" not in report and f"{len(outcomes)} of {len(outcomes)} requirements passed" in report


def test_a_client_that_sends_its_model_instead_of_the_update_fails_train_update_only(
        tmp_path: Path) -> None:
    # act
    done = _kit(tmp_path, "--client-cmd", BROKEN.format(flaw="model-not-update"), "--scenarios", "plain",
                "--json")

    # assert: exit 1; the report's one JSON line names the failed requirement and the elements
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["passed"] is False
    results = {r["id"]: r for r in report["requirements"]}
    assert results["train-update"]["passed"] is False
    assert "elements differ" in results["train-update"]["detail"]
    assert results["train-update"]["section"] == "4, 5.1, 5.2, 5.3"
    assert all(r["passed"] for r in report["requirements"] if r["id"] != "train-update")


def test_a_client_that_ignores_retry_hints_fails_wait_hint_and_decline_hint(
        tmp_path: Path) -> None:
    # act
    done = _kit(tmp_path, "--client-cmd", BROKEN.format(flaw="ignore-hints"), "--scenarios",
                "waiting,decline")

    # assert: the table marks both hints FAIL with how soon it polled; the rest passes
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    head = next(line for line in lines if line.startswith("result"))
    at, to = head.index("scenario"), head.index("detail")
    rows = {(line.split()[1], line[at:to].strip()): line for line in lines
            if line.startswith(("PASS ", "FAIL "))}  # (requirement, scenario) -> row
    wait, decline = rows[("wait-hint", "waiting")], rows[("decline-hint", "decline")]
    assert wait.startswith("FAIL") and "came after only" in wait, done.stdout
    assert decline.startswith("FAIL") and "after a decline told to wait" in decline
    assert all(line.startswith("PASS") for key, line in rows.items()
               if key not in (("wait-hint", "waiting"), ("decline-hint", "decline"))), done.stdout
    assert "FAILED decline-hint (docs/protocol.md 3.4, 4.1; scenario decline)" in done.stdout
    assert "FAILED wait-hint (docs/protocol.md 2, 3.2; scenario waiting)" in done.stdout


def test_a_client_written_from_the_protos_alone_passes_plain_rounds_and_fails_secure_ones(
        tmp_path: Path) -> None:
    # arrange: raw_protocol_client.py uses only generated stubs, grpc and numpy; it declines
    # secure rounds
    command = (f"{sys.executable} {Path(__file__).with_name('raw_protocol_client.py')} "
               "{address} {client_id} {token} {add} {examples}")

    # act
    outcomes = run_kit(ClientCommand(command), ["plain", "secure"], log_dir=tmp_path)

    # assert
    failed = [(o.scenario, o.requirement.id) for o in outcomes if not o.passed]
    assert failed == [("secure", "secure-round")], table(outcomes)
    assert {o.requirement.id for o in outcomes if o.scenario == "plain"} == {
        "join", "train-update", "evaluate", "done"}


@pytest.mark.parametrize(("template", "message"), [
    ("client {client_id}", "must contain {address}"),
    ("client {address} {port}", "unknown placeholder {port}"),
    ("", "the client command is empty"),
])
def test_a_bad_client_command_is_refused_with_what_to_fix(template: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ClientCommand(template)


@pytest.mark.parametrize(("args", "message"), [
    (["--client-cmd", REFERENCE, "--scenarios", "plain,nosuch"], "unknown scenario(s) nosuch"),
    (["--client-cmd", "client {client_id}"], "must contain {address}"),
    (["--client-cmd", REFERENCE, "--scenarios", ","], "--scenarios names no scenario"),
])
def test_the_cli_refuses_a_bad_command_line_with_status_2_before_starting_anything(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err
