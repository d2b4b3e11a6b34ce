"""A start-up error is one line on stderr that names the flag or key and says what to do; the
exit status is 2 and nothing starts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedcore.cli import main


def fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `fedcore argv` prints, checking it exits 2 with nothing else."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refuses the flag itself
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process (this test) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("argv", [
    ["server", "--address", "127.0.0.1:83536"],
    ["client", "--server", "127.0.0.1:83536", "--partition", "0", "--num-partitions", "2"],
    ["health", "--server", "127.0.0.1:83536"],
])
def test_a_port_out_of_range_is_refused_not_wrapped(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    line = fail(argv, capsys)

    assert "83536" in line and "out of range" in line and "0..65535" in line
    assert ("--address" in line) or ("--server" in line)


def test_the_demo_port_is_checked_too(capsys) -> None:  # type: ignore[no-untyped-def]
    line = fail(["demo", "--port", "70000"], capsys)

    assert "--port" in line and "out of range" in line


def test_a_port_in_use_says_so(busy_port: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    line = fail(["server", "--address", f"127.0.0.1:{busy_port}", "--out", str(tmp_path)], capsys)

    assert line.startswith("fedcore server: error: --address:")
    assert "address already in use" in line and "choose another port" in line


def test_a_port_in_use_from_the_config_names_the_key(busy_port: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = toml(tmp_path, f'[server]\naddress = "127.0.0.1:{busy_port}"\n')

    line = fail(["server", "--config", config, "--out", str(tmp_path)], capsys)

    assert "[server] address" in line and "address already in use" in line


def test_the_demo_port_in_use_says_so(busy_port: int, capsys) -> None:  # type: ignore[no-untyped-def]
    line = fail(["demo", "--port", str(busy_port)], capsys)

    assert "--port" in line and "address already in use" in line


def test_an_unresolvable_host_is_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    line = fail(["server", "--address", "no-such-host.invalid:8080", "--out", str(tmp_path)],
                capsys)

    assert "--address" in line and "cannot resolve host 'no-such-host.invalid'" in line


@pytest.mark.parametrize(("text", "expected"), [
    ("[rounds]\nfraction = 2.5\n", "rounds.fraction must be in (0, 1]"),
    ("[rounds]\nclients_per_round = 3\nfraction = 2.5\n", "rounds.fraction must be in (0, 1]"),
    ("[server]\nmax_payload_mb = -1\n", "server.max_payload_mb must be > 0, got -1"),
    ("[server]\nlong_poll_s = -5\n", "server.long_poll_s must be > 0, got -5"),
    ("[rounds]\nround_timeout_s = -5\n", "rounds.round_timeout_s must be > 0, got -5"),
    ("[rounds]\nnum_rounds = 0\n", "rounds.num_rounds must be >= 1, got 0"),
    ("[rounds]\nmin_results = 4\nmin_available = 2\n",
     "rounds.min_results (4) cannot exceed rounds.min_available (2)"),
    ('[server]\naddress = "0.0.0.0:83536"\n', "server.address: '0.0.0.0:83536': port 83536"),
    ("[privacy.local]\nnoise_multiplier = 1.0\ndelta = 2\n",
     "error: [privacy.local]: delta must be in (0, 1)"),
])
def test_a_bad_value_in_the_file_names_its_section_and_key(
    text: str, expected: str, tmp_path: Path, capsys  # type: ignore[no-untyped-def]
) -> None:
    line = fail(["server", "--config", toml(tmp_path, text), "--out", str(tmp_path)], capsys)

    assert expected in line
    assert "Config(" not in line  # no dataclass repr
    assert "max_payload_bytes" not in line and "chunk_bytes" not in line  # no internal names


@pytest.mark.parametrize(("argv", "flag"), [
    (["client", "--server", "h:1", "--partition", "0", "--num-partitions", "0"],
     "--num-partitions: must be >= 1, got 0"),
    (["client", "--server", "h:1", "--partition", "3", "--num-partitions", "3"],
     "--partition 3 is out of range for --num-partitions 3: use 0..2"),
    (["client", "--server", "h:1", "--partition", "-1", "--num-partitions", "3"],
     "--partition: must be >= 0"),
    (["server", "--round-timeout", "-5"], "--round-timeout: must be > 0, got -5"),
    (["client", "--server", "h:1", "--partition", "0", "--num-partitions", "2",
      "--auth-token-file", "/nonexistent/token"], "--auth-token-file: cannot read /nonexistent"),
    (["server", "--rounds", "0"], "--rounds: must be >= 1, got 0"),
    (["health", "--server", "h:1", "--timeout", "0"], "--timeout: must be > 0"),
])
def test_a_bad_flag_is_one_line_naming_it(argv: list[str], flag: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert flag in fail(argv, capsys)
