"""The coordinator's checkpoint file: `checkpoint.fcp` in the run's output folder.

Written to a temporary name, fsynced and renamed over the old one after every completed round
(a buffered run's: after every server step), so a crash leaves the old checkpoint or the new
one, never half of either. The bytes are `fedcore.engine.checkpoint`'s layout; nothing is
pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fedcore.engine.buffered import BufferedSnapshot
from fedcore.engine.checkpoint import (
    CheckpointError,
    buffered_checkpoint_from_bytes,
    buffered_checkpoint_to_bytes,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
)
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.storage.atomic import write_atomic

FILENAME = "checkpoint.fcp"
S = TypeVar("S")


def save_checkpoint(out_dir: Path, snapshot: EngineSnapshot | BufferedSnapshot) -> Path:
    """Write `snapshot` (a round-based or a buffered run's) to `out_dir/checkpoint.fcp`
    atomically (mode 0600); returns the path."""
    path = Path(out_dir) / FILENAME
    data = (buffered_checkpoint_to_bytes(snapshot) if isinstance(snapshot, BufferedSnapshot)
            else checkpoint_to_bytes(snapshot))
    write_atomic(path, data, mode=0o600)
    return path


def load_checkpoint(out_dir: Path) -> EngineSnapshot | None:
    """The round-based run's snapshot in `out_dir`, or None when there is no checkpoint there.

    Raises:
        CheckpointError: the file exists but cannot be read back (or is a buffered run's); the
            message names it.
    """
    return _load(out_dir, checkpoint_from_bytes)


def load_buffered_checkpoint(out_dir: Path) -> BufferedSnapshot | None:
    """The buffered run's snapshot in `out_dir`, or None when there is no checkpoint there.

    Raises:
        CheckpointError: the file exists but cannot be read back (or is a round-based run's);
            the message names it.
    """
    return _load(out_dir, buffered_checkpoint_from_bytes)


def _load(out_dir: Path, decode: Callable[[bytes], S]) -> S | None:
    path = Path(out_dir) / FILENAME
    if not path.exists():
        return None
    try:
        return decode(path.read_bytes())
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path} is {err}; move it away to start afresh") from err
