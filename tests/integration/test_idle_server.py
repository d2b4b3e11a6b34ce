"""An idle coordinator (`fedcore server` with its config loaded and serving) loads no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import pathlib, sys, threading
import numpy as np
from fedcore.config import load_config
from fedcore.coordinator.process import run_coordinator
import fedcore.cli

model = pathlib.Path(sys.argv[1]).with_name("initial.npz")
np.savez(model, w=np.zeros(4, np.float32))
plan = load_config(None, {"server.address": "127.0.0.1:0", "server.out_dir": sys.argv[1],
                          "server.metrics_port": 0, "server.initial_model": str(model)})
stop = threading.Event()
run_coordinator(plan, stop=stop, on_start=lambda server, port: stop.set())
print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'opacus')))
"""


def test_an_idle_coordinator_loads_no_torch(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, check=True)

    assert out.stdout.strip().splitlines()[-1] == "[]"
