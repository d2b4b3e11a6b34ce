"""The run history on disk: `history.json` ({"rounds": [...]}) and `history.csv`, rewritten
atomically after every round so a reader never sees a half-written file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from fedcore.engine.records import RoundRecord
from fedcore.storage.atomic import write_atomic

CSV_COLUMNS = (
    "round", "status", "clients_selected", "results_received", "train_loss", "loss", "accuracy",
    "eval_clients", "duration_s", "reason",
)


class HistoryWriter:
    """Appends round records and keeps `history.json` and `history.csv` in `out_dir` current."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []

    @property
    def json_path(self) -> Path:
        return self.out_dir / "history.json"

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "history.csv"

    def append(self, record: RoundRecord) -> None:
        """Add one round and rewrite both files."""
        self.rows.append(record.to_dict())
        write_atomic(self.json_path, json.dumps({"rounds": self.rows}, indent=2).encode())
        columns = list(CSV_COLUMNS) + sorted(
            {k for row in self.rows for k in row} - set(CSV_COLUMNS)
        )
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.csv_path, buf.getvalue().encode())
