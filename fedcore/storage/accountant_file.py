"""A client's privacy accountant kept in its state directory (`privacy_accountant.json`).

Every `record` rewrites the file atomically (temp file, fsync, `os.replace`, mode 0600), so a
restarted client continues its history instead of starting from zero and under-reporting ε.
"""

from __future__ import annotations

from pathlib import Path

from fedcore.dp.accountant import PrivacyAccountant, accountant_from_json, accountant_to_json
from fedcore.dp.opacus import Mechanism
from fedcore.storage.atomic import write_atomic

FILE_NAME = "privacy_accountant.json"


def open_accountant(state_dir: Path, *, mechanism: Mechanism = Mechanism.RDP) -> PrivacyAccountant:
    """Load the accountant kept in `state_dir`, or start an empty one that will be kept there.

    Raises:
        ValueError: the stored file is unreadable or uses another mechanism.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME

    def persist(accountant: PrivacyAccountant) -> None:
        write_atomic(path, accountant_to_json(accountant).encode(), mode=0o600)

    if not path.exists():
        return PrivacyAccountant(mechanism=mechanism, on_record=persist)
    stored = accountant_from_json(path.read_text(encoding="utf-8"), where=str(path))
    if stored.mechanism is not mechanism:
        raise ValueError(
            f"{path} holds a {stored.mechanism.value} history, not {mechanism.value}; "
            "open it with the mechanism it was written with"
        )
    stored.on_record = persist
    return stored
