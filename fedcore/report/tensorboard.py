"""TensorBoard event files of a run, for researchers who compare runs there.

One scalar per round and metric under `round/` (train_loss, loss, accuracy, duration_s,
results_received and every extra metric the round reports, e.g. the ε of each privacy
mechanism), at step = the round number. Needs the `tensorboard` package (the `[tensorboard]`
extra); it is imported only when a writer is made.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fedcore.engine.records import RoundRecord

MISSING = ("TensorBoard output needs the tensorboard package: "
           "pip install 'fedcore[tensorboard]' (or turn [simulation] tensorboard off)")


class TensorBoardWriter:
    """Writes each round's numbers as scalars to event files in `log_dir`."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch is there; tensorboard may not be
            raise RuntimeError(MISSING) from err
        self.log_dir = Path(log_dir)
        self._writer: Any = SummaryWriter(log_dir=str(self.log_dir))

    def append(self, record: RoundRecord) -> None:
        """Add one round's scalars (non-numeric and non-finite values are left out)."""
        for name, value in scalars(record).items():
            self._writer.add_scalar(f"round/{name}", value, global_step=record.round)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


def scalars(record: RoundRecord) -> dict[str, float]:
    """The numbers of a round worth plotting: every finite numeric field and metric."""
    skip = {"round", "status", "reason"}
    return {
        name: float(value) for name, value in record.to_dict().items()
        if name not in skip and isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value)
    }
