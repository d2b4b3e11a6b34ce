"""A client's state directory: identity, resume information and the privacy accountant's file.

The directory is created owner-only (0700) and every file in it is written owner-only (0600) by
atomic replacement (temp file in the same directory, fsync, `os.replace`, fsync of the
directory), so a process stopped or killed at any moment leaves each file either old or new,
never torn. A lock file (`flock`) keeps two SDK instances, in one process or in two, from
sharing a directory; instances with different directories share nothing.

Layout (all names are fixed; other modules take a path from `path_for`):

    lock                    the lock (holds the owner's pid, for error messages)
    client_id               this client's id, UTF-8, no newline
    resume.json             `ResumeInfo` as JSON
    privacy_accountant.json written by `fedcore.dp.accountant` (see `path_for`)
    <name>                  opaque blobs through `read_bytes` / `write_bytes` (e.g. keys)
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from fedcore.errors import FedcoreError
from fedcore.storage.atomic import write_atomic

log = logging.getLogger(__name__)

LOCK_NAME = "lock"
CLIENT_ID_NAME = "client_id"
RESUME_NAME = "resume.json"
_TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RESUME_FORMAT = 1


class StateError(FedcoreError, RuntimeError):
    """The state directory cannot be used (locked by another client, unsafe, or unreadable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeInfo:
    """What the last run left behind: the last task reported, and one cut short, if any."""

    last_round: int = 0
    last_task_id: str = ""
    tasks_reported: int = 0
    interrupted_task_id: str = ""


class StateDir:
    """An open, locked client state directory; `close()` (or `with`) releases it.

    Use `StateDir.open(path)`; the constructor is internal.
    """

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StateDir:
        """Create (0700) or open `path` and lock it for this instance.

        Raises:
            StateError: another client holds the lock, or the directory belongs to another user.
        """
        directory = Path(path).expanduser().absolute()
        _make_private_dir(directory)
        fd = _lock(directory / LOCK_NAME)
        state = cls(directory, fd)
        state._remove_stale_temp_files()
        return state

    def __enter__(self) -> StateDir:  # noqa: PYI034
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the lock was released."""
        return self._lock_fd is None

    def close(self) -> None:
        """Release the lock (idempotent). The files stay."""
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None

    # ----------------------------------------------------------------- files
    def path_for(self, name: str) -> Path:
        """Where the file `name` lives, for modules that write their own (e.g. the accountant).

        Writers must replace the file atomically with mode 0600, as `write_bytes` does.
        """
        return self.path / _checked(name)

    def read_bytes(self, name: str) -> bytes | None:
        """The content of `name`, or None when it was never written."""
        try:
            return self.path_for(name).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace `name` with `data` atomically (mode 0600)."""
        self._check_open()
        write_atomic(self.path_for(name), data, mode=0o600, prefix=_TMP_PREFIX, sync_dir=True)

    def read_json(self, name: str) -> object | None:
        """The JSON value stored in `name`, or None when it was never written.

        Raises:
            StateError: the file is not valid JSON.
        """
        raw = self.read_bytes(name)
        if raw is None:
            return None
        try:
            value: object = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StateError(f"{self.path_for(name)} is not valid JSON: {err}") from err
        return value

    def write_json(self, name: str, value: object) -> None:
        """Replace `name` with `value` as JSON, atomically."""
        self.write_bytes(name, json.dumps(value, sort_keys=True).encode("utf-8"))

    # ----------------------------------------------------------------- identity and resume
    def client_id(self, requested: str | None = None) -> str:
        """This directory's client id: the stored one, else `requested`, else a new random one.

        Raises:
            StateError: `requested` differs from the id already stored here.
        """
        raw = self.read_bytes(CLIENT_ID_NAME)
        stored = raw.decode("utf-8") if raw is not None else None
        if stored and requested and stored != requested:
            raise StateError(
                f"{self.path} belongs to client {stored!r}, not {requested!r}: "
                "use another state directory for another client"
            )
        if stored:
            return stored
        chosen = requested or f"client-{secrets.token_hex(8)}"  # 64 random bits
        self.write_bytes(CLIENT_ID_NAME, chosen.encode("utf-8"))
        return chosen

    def resume(self) -> ResumeInfo:
        """The resume information (empty before the first task).

        Raises:
            StateError: the file exists but does not hold resume information.
        """
        value = self.read_json(RESUME_NAME)
        if value is None:
            return ResumeInfo()
        if not isinstance(value, dict) or value.get("format") != _RESUME_FORMAT:
            raise StateError(f"{self.path_for(RESUME_NAME)} is not fedcore resume information")
        defaults = ResumeInfo()
        fields = {k: v for k, v in value.items() if k != "format"}
        if set(fields) != set(asdict(defaults)) or any(
            type(v) is not type(getattr(defaults, k)) for k, v in fields.items()
        ):
            raise StateError(f"{self.path_for(RESUME_NAME)} has unexpected fields: {fields}")
        return ResumeInfo(**fields)

    def save_resume(self, info: ResumeInfo) -> None:
        """Replace the resume information atomically."""
        self.write_json(RESUME_NAME, {"format": _RESUME_FORMAT, **asdict(info)})

    # ----------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise StateError(f"{self.path} was closed; open it again to write")

    def _remove_stale_temp_files(self) -> None:
        for leftover in self.path.glob(f"{_TMP_PREFIX}*"):
            log.info("removing %s, left by a process that stopped mid-write", leftover)
            leftover.unlink(missing_ok=True)


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name) or name == LOCK_NAME:
        raise ValueError(
            f"state file name {name!r} must be 1..128 of [A-Za-z0-9._-], not start with "
            f"a dot or dash, and not be {LOCK_NAME!r}"
        )
    return name


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise StateError(f"{directory} belongs to another user; refusing to keep state there")
    if stat.S_IMODE(info.st_mode) != 0o700:
        if stat.S_IMODE(info.st_mode) & 0o077:
            log.warning("%s was readable by others; restricting it to its owner", directory)
        directory.chmod(0o700)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _try_lock(fd)
    except OSError as err:
        owner = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StateError(
            f"{path.parent} is in use by another fedcore client (pid {owner}); "
            "each client needs its own state directory"
        ) from err
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode("ascii"))
    return fd


if sys.platform != "win32":
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

else:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
