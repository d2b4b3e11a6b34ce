"""Run metadata in SQLite: the clients seen and the rounds with their metrics.

One file (`runs.sqlite` in the coordinator's output directory by default), safe to read with
any SQLite tool while the coordinator runs (WAL mode). The store is an append/upsert log for
operators; the checkpoint, not the store, is what a resumed run continues from.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedcore.engine.records import RoundRecord

ACTIVITY_EVERY_S = 10.0  # how often at most a client's last_seen is written on activity

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id  TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    joins      INTEGER NOT NULL DEFAULT 0,
    peer       TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rounds (
    round            INTEGER PRIMARY KEY,
    status           TEXT NOT NULL,
    clients_selected INTEGER NOT NULL,
    results_received INTEGER NOT NULL,
    train_loss       REAL,
    loss             REAL,
    accuracy         REAL,
    duration_s       REAL NOT NULL,
    reason           TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    finished_at      REAL NOT NULL
);
"""


class RunStore:
    """An SQLite file of clients and rounds. Thread-safe; every write commits at once."""

    def __init__(
        self, path: Path, *, wall_clock: Callable[[], float] = time.time,
        activity_every_s: float = ACTIVITY_EVERY_S,
    ) -> None:
        self.path = Path(path)
        self._activity_every_s = activity_every_s
        self._last_written: dict[str, float] = {}  # client -> when its last_seen was written
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = wall_clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def client_joined(self, client_id: str, peer: str = "") -> None:
        """Note a join (first or again)."""
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT INTO clients (client_id, first_seen, last_seen, joins, peer) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT(client_id) DO UPDATE SET "
                "last_seen = excluded.last_seen, joins = joins + 1, peer = excluded.peer",
                (client_id, now, now, peer),
            )
        self._last_written[client_id] = now

    def client_active(self, client_id: str) -> None:
        """Note that a joined client is still there: its `last_seen` moves on, written at most
        every `activity_every_s` per client (a poll every few seconds need not be a write)."""
        now = self._clock()
        if now - self._last_written.get(client_id, -math.inf) < self._activity_every_s:
            return
        with self._lock:
            self._db.execute("UPDATE clients SET last_seen = ? WHERE client_id = ?",
                             (now, client_id))
        self._last_written[client_id] = now

    def round_completed(self, record: RoundRecord) -> None:
        """Record a round (a round redone after a restart replaces its row)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.round, record.status, record.clients_selected,
                    record.results_received, record.train_loss, record.loss, record.accuracy,
                    record.duration_s, record.reason, json.dumps(record.metrics), self._clock(),
                ),
            )

    def clients(self) -> list[dict[str, Any]]:
        """Every client seen, in order of first appearance."""
        return self._rows("SELECT * FROM clients ORDER BY first_seen, client_id")

    def rounds(self) -> list[dict[str, Any]]:
        """Every round recorded, in order."""
        rows = self._rows("SELECT * FROM rounds ORDER BY round")
        for row in rows:
            row["metrics"] = json.loads(row["metrics"])
        return rows

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _rows(self, query: str) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
