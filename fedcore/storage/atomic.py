"""Atomic file replacement: readers see the old file or the new one, never a mix.

The data goes to a temporary file in the same directory (created 0600, so secrets are never
readable on the way), is fsynced, gets its final mode, and is renamed over the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o644, prefix: str | None = None,
    sync_dir: bool = False,
) -> None:
    """Replace `path` with `data`.

    Args:
        mode: the file's permissions once in place (0600 for anything secret).
        prefix: the temporary file's name prefix (default: a dot and the target's name).
        sync_dir: also fsync the directory, so the rename itself survives a power loss.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir and os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
