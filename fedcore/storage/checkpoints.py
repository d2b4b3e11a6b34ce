"""The coordinator's checkpoint file: `checkpoint.fcp` in the run's output folder.

Written to a temporary name, fsynced and renamed over the old one after every completed round,
so a crash leaves the old checkpoint or the new one, never half of either. The bytes are
`fedcore.engine.checkpoint`'s layout; nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path

from fedcore.engine.checkpoint import CheckpointError, checkpoint_from_bytes, checkpoint_to_bytes
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.storage.atomic import write_atomic

FILENAME = "checkpoint.fcp"


def save_checkpoint(out_dir: Path, snapshot: EngineSnapshot) -> Path:
    """Write `snapshot` to `out_dir/checkpoint.fcp` atomically (mode 0600); returns the path."""
    path = Path(out_dir) / FILENAME
    write_atomic(path, checkpoint_to_bytes(snapshot), mode=0o600)
    return path


def load_checkpoint(out_dir: Path) -> EngineSnapshot | None:
    """The snapshot in `out_dir`, or None when there is no checkpoint there.

    Raises:
        CheckpointError: the file exists but cannot be read back; the message names it.
    """
    path = Path(out_dir) / FILENAME
    if not path.exists():
        return None
    try:
        return checkpoint_from_bytes(path.read_bytes())
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path} is {err}; move it away to start afresh") from err
