"""The guides in docs/guides/ work as written: each guide's marked blocks run, in order, in a
fresh directory, as a reader would run them from the repository.

Markers, on the line before a fenced block:

- `<!-- test -->` before a `bash` block: run it with `bash -eu -o pipefail`; it must exit 0.
- `<!-- test file=NAME -->` before any block: write its text to NAME (a script, a TOML file).
- `sub="OLD=>NEW"` (repeatable) in either: shrink the sizes for the suite (rounds, clients).
- `<!-- not tested ...: reason -->`: a block the suite cannot run here, with the reason.

Every `bash` block carries one marker or the other, so a new command cannot slip in
untested. A bare `wait` waits for each background job in turn, so that one failing fails
the block. The ports 8080, 8081 and 9100 become free ports; commands find the repository's
`benchmarks/`, `clients/`, `server/` and `docs/` through links, and the venv's `fedcore` and
`python` first on PATH.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs" / "guides"
NAMES = ("researcher.md", "app-developer.md", "operator.md")
LINKED = ("benchmarks", "clients", "server", "docs")
PORTS = ("8080", "8081", "9100")
BLOCK = re.compile(r"(?:<!--\s*(?P<marker>[^\n]*?)\s*-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
                   re.DOTALL)

pytestmark = pytest.mark.timeout(300)


@dataclass
class Step:
    lang: str
    body: str
    run: bool = False
    file: str | None = None
    subs: list[tuple[str, str]] = field(default_factory=list)
    skip_reason: str | None = None


def steps_of(text: str) -> list[Step]:
    """The fenced blocks of a guide with what their markers ask."""
    steps = []
    for m in BLOCK.finditer(text):
        step = Step(lang=m["lang"], body=m["body"])
        marker = m["marker"] or ""
        if marker.startswith("not tested"):
            step.skip_reason = marker
        elif marker.startswith("test"):
            step.subs = [tuple(s.split("=>", 1)) for s in re.findall(r'sub="([^"]*)"', marker)]  # type: ignore[misc]
            name = re.search(r"file=(\S+)", marker)
            step.file = name[1] if name else None
            step.run = step.file is None
        steps.append(step)
    return steps


def test_every_guide_block_is_marked_and_the_readme_links_the_guides() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in NAMES:
        steps = steps_of((GUIDES / name).read_text())
        assert any(s.run for s in steps), f"{name} has no tested command"
        for step in steps:
            if step.lang == "bash":
                assert step.run or step.skip_reason or step.file, (
                    f"{name}: a bash block has neither <!-- test --> nor <!-- not tested: why -->"
                    f":\n{step.body}")
            for old, _ in step.subs:
                assert old in step.body, f"{name}: sub {old!r} matches nothing in its block"
        assert f"docs/guides/{name}" in readme, f"the README does not link docs/guides/{name}"


@pytest.mark.parametrize("name", NAMES)
def test_the_guide_runs(name: str, tmp_path: Path) -> None:
    for linked in LINKED:
        (tmp_path / linked).symlink_to(ROOT / linked)
    ports = {port: str(free_port()) for port in PORTS}
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT), GRPC_VERBOSITY="error")
    for step in steps_of((GUIDES / name).read_text()):
        body = step.body
        for old, new in step.subs:
            body = body.replace(old, new)
        for port, free in ports.items():
            body = body.replace(port, free)
        # a bare `wait` returns 0 whatever the jobs did: wait for each, so a failure counts
        body = re.sub(r"^wait$", 'for job in $(jobs -p); do wait "$job"; done', body, flags=re.MULTILINE)
        if step.file:
            (tmp_path / step.file).write_text(body)
        elif step.run:
            _run(body, tmp_path, env)


def _run(script: str, cwd: Path, env: dict[str, str]) -> None:
    """Run one bash block; on failure (or timeout) kill everything it started."""
    proc = subprocess.Popen(["bash", "-eu", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out:\n{script}\n--- output ---\n{out[-4000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # background jobs a failed block left behind
        except ProcessLookupError:
            pass
    print(f"$ {script}\n{out}")  # pytest -s shows what each block printed
    assert proc.returncode == 0, f"failed ({proc.returncode}):\n{script}\n--- output ---\n{out[-4000:]}"
