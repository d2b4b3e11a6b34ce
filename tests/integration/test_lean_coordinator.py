"""`fedcore server`, started as an operator starts it, stays lean: with a configuration that
needs no DP accounting it never imports torch or opacus (nor matplotlib before a run ends),
and it idles well under 150 MB of resident memory, status page and metrics included.

The check reads what the process really did: `python -X importtime` lists every module it
imported, and /proc/PID/maps every shared library it mapped (torch's libtorch would show).
The RSS figure it measures is printed (`pytest -s`); 74 MB on the development machine.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from .conftest import free_port, wait_until

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc"),
]

HEAVY = ("torch", "opacus", "matplotlib")
RSS_LIMIT_MB = 150
LAUNCH = "import sys; from fedcore.cli import main; sys.exit(main())"


def test_an_idle_server_imports_no_torch_and_stays_small(tmp_path: Path) -> None:
    # arrange: the operator's command, with the status page and metrics on
    status_port = free_port()
    log = tmp_path / "stderr.log"
    np.savez(tmp_path / "initial.npz", w=np.zeros((64, 10), np.float32))
    args = [sys.executable, "-X", "importtime", "-c", LAUNCH, "server",
            "--address", "127.0.0.1:0", "--out", str(tmp_path / "run"), "--min-clients", "3",
            "--initial-model", str(tmp_path / "initial.npz"),
            "--status-port", str(status_port), "--metrics-port", str(free_port())]

    # act: start it, let it idle waiting for clients, look at it, stop it as docker would
    with log.open("w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda: "coordinator serving" in log.read_text() or proc.poll() is not None,
                       timeout=60)
            assert proc.poll() is None, log.read_text()[-2000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/", timeout=10) as page:
                assert "waiting for clients: 0 of 3" in page.read().decode()
            time.sleep(1.0)  # idle: the engine ticks, long-polls would wait
            rss_mb = _rss_mb(proc.pid)
            libraries = Path(f"/proc/{proc.pid}/maps").read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    imported = _imported_modules(log.read_text())

    # assert
    print(f"idle fedcore server: {rss_mb:.1f} MB RSS, {len(imported)} modules")
    assert proc.returncode == 0
    assert "fedcore.coordinator.status_page" in imported  # the importtime list is real
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    assert "libtorch" not in libraries
    assert rss_mb < RSS_LIMIT_MB


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


def _imported_modules(stderr: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | name`."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}
