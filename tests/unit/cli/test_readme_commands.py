"""The README's "Using it" commands work as written after its two set-up commands: they say
how to get the venv's `fedcore`, every `fedcore` command parses with the real parser, and the
coordinator that waits for 3 clients is shown with 3 clients on different partitions."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fedcore.cli import build_parser

README = Path(__file__).resolve().parents[3] / "README.md"
BASH = re.compile(r"```bash\n(.*?)```", re.DOTALL)
SHELL = {"&", "&&", "|", ";", ">", ">>"}  # where the command's own arguments end


def using_it() -> str:
    text = README.read_text()
    return text[text.index("## Using it"):text.index("## How it is built")]


def commands(section: str) -> list[list[str]]:
    """Every `fedcore ...` command of the section's bash blocks, as argv (continuations joined,
    loop variables as 0, comments, redirections and `&` dropped)."""
    found = []
    for block in BASH.findall(section):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].replace("$i", "0").strip()
            if not line.startswith("fedcore "):
                continue
            argv = shlex.split(line)[1:]
            end = next((i for i, a in enumerate(argv) if a in SHELL or a[:2] in ("> ", "2>")
                        or a.startswith(">")), len(argv))
            found.append(argv[:end])
    return found


def test_the_section_says_how_to_get_fedcore_before_using_it() -> None:
    section = using_it()
    first_command = section.index("fedcore server")

    assert "source .venv/bin/activate" in section[:first_command]
    for block in BASH.findall(section)[:2]:
        assert block.startswith("source .venv/bin/activate\n")


@pytest.mark.parametrize("argv", commands(using_it()), ids=lambda argv: " ".join(argv[:2]))
def test_every_fedcore_command_parses(argv: list[str]) -> None:
    build_parser().parse_args(argv)  # a bad flag exits 2 and fails the test


def test_the_coordinator_waiting_for_three_gets_three_clients_on_their_own_partitions() -> None:
    section = using_it()
    server = next(a for a in commands(section) if a[0] == "server")
    clients_block = next(b for b in BASH.findall(section) if "fedcore client" in b)

    assert server[server.index("--min-clients") + 1] == "3"
    assert "for i in 0 1 2; do" in clients_block and "--partition $i --num-partitions 3" in (
        " ".join(clients_block.replace("\\\n", " ").split()))
