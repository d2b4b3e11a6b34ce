"""A live status page of a coordinator (`fedcore server --status-port N`).

`StatusBoard` is a `ServerObserver`: it keeps what the gRPC driver reports (clients joined and
connected, the rounds as they close). `StatusPage` serves it over HTTP from a daemon thread
(standard library only): `/` is a small HTML page that reloads itself every few seconds, with
the run's state, the clients, the latest rounds and inline-SVG plots of accuracy, loss and
epsilon; `/status.json` is the same data for scripts. It binds to 127.0.0.1 unless told
otherwise: the page names clients and their addresses.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fedcore.config.tables import ConfigError
from fedcore.engine.records import PrivacyMechanism, RoundRecord
from fedcore.report.svg_chart import line_chart

log = logging.getLogger(__name__)

REFRESH_S = 2
ROWS_SHOWN = 20
CLIENTS_SHOWN = 50


class StatusBoard:
    """What the status page shows, kept current by the coordinator's observer events.

    Args:
        num_rounds: rounds the run will do.
        min_clients: clients needed before the first round starts.
        phase: returns the engine's phase ("waiting", "training", ..., "done").
        records: rounds already completed (a resumed run).
        clock: wall-clock time, for "joined at" and "updated" stamps.
    """

    def __init__(
        self,
        *,
        num_rounds: int,
        min_clients: int,
        phase: Callable[[], str],
        records: Iterable[RoundRecord] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._num_rounds = num_rounds
        self._min_clients = min_clients
        self._phase = phase
        self._clock = clock
        self._started = clock()
        self._updated = self._started
        self._rows = [_row(r) for r in records]
        self._clients: dict[str, dict[str, Any]] = {}
        self._connected = 0
        self._outstanding = 0
        self._round = self._rows[-1]["round"] if self._rows else 0

    # ----------------------------------------------------------------- ServerObserver
    def client_joined(self, client_id: str, peer: str) -> None:
        """Remember the client, its address and when it (last) joined."""
        with self._lock:
            self._clients[client_id] = {"id": client_id, "peer": peer, "joined": self._clock()}
            self._updated = self._clock()

    def engine_ticked(self, *, connected: int, outstanding: int, round_number: int) -> None:
        """Clients available now, tasks outstanding, the round in progress."""
        with self._lock:
            self._connected, self._outstanding, self._round = connected, outstanding, round_number

    def round_completed(self, record: RoundRecord) -> None:
        """Add a closed round (successful or failed)."""
        with self._lock:
            self._rows.append(_row(record))
            self._updated = self._clock()

    # ----------------------------------------------------------------- reading
    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, JSON-ready."""
        phase = self._phase()
        with self._lock:
            return {
                "state": phase,
                "round": self._round,
                "num_rounds": self._num_rounds,
                "min_clients": self._min_clients,
                "connected": self._connected,
                "outstanding": self._outstanding,
                "clients_joined": len(self._clients),
                "clients": sorted(self._clients.values(), key=lambda c: -c["joined"]),
                "rounds": [dict(row) for row in self._rows],
                "started": self._started,
                "updated": self._updated,
            }


def _row(record: RoundRecord) -> dict[str, Any]:
    return {
        "round": record.round, "status": str(record.status), "reason": record.reason,
        "clients_selected": record.clients_selected, "results": record.results_received,
        "train_loss": record.train_loss, "loss": record.loss, "accuracy": record.accuracy,
        "epsilon": {m.value: e for m, e in record.epsilons().items()},
        "duration_s": record.duration_s,
    }


def render_html(snap: dict[str, Any], *, refresh_s: int = REFRESH_S) -> str:
    """The status page for a `StatusBoard.snapshot()`; every value is escaped."""
    e = html.escape
    rows = snap["rounds"]
    summary = _state_line(snap)
    table = "".join(
        ("<tr>" if r["status"] == "ok" else '<tr class="failed">') + "".join(f"<td>{e(cell)}</td>" for cell in (
            str(r["round"]), r["status"], r["reason"] or "",
            f"{r['results']}/{r['clients_selected']}",
            _num(r["train_loss"], ".4f"), _num(r["loss"], ".4f"), _num(r["accuracy"], ".3f"),
            ", ".join(f"{k} {v:.3g}" for k, v in r["epsilon"].items()) or "-",
            f"{r['duration_s']:.1f}s",
        )) + "</tr>"
        for r in reversed(rows[-ROWS_SHOWN:])
    )
    clients = "".join(
        f"<li>{e(c['id'])} <small>from {e(c['peer'])}, joined "
        f"{e(time.strftime('%H:%M:%S', time.localtime(c['joined'])))}</small></li>"
        for c in snap["clients"][:CLIENTS_SHOWN]
    )
    more = len(snap["clients"]) - CLIENTS_SHOWN
    if more > 0:
        clients += f"<li>... and {more} more</li>"
    plots = "".join(_plots(rows))
    updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap["updated"]))
    refresh = "" if snap["state"] == "done" else \
        f'<meta http-equiv="refresh" content="{int(refresh_s)}">'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>fedcore coordinator: {e(snap["state"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
.plots svg {{ margin-right: 1em; }}
tr.failed {{ color: #b00; }}
</style></head>
<body>
<h1>fedcore coordinator</h1>
<p id="state" data-state="{e(snap["state"])}">{e(summary)}</p>
<p id="clients-summary" data-joined="{snap["clients_joined"]}" data-connected="{snap["connected"]}">
{snap["clients_joined"]} clients joined, {snap["connected"]} connected now
(a round needs {snap["min_clients"]}); {snap["outstanding"]} tasks outstanding.</p>
<div class="plots" id="plots">{plots}</div>
<h2>Latest rounds</h2>
<table id="rounds" data-rounds="{len(rows)}"><thead><tr><th>round</th><th>status</th>
<th>reason</th><th>results</th><th>train loss</th><th>loss</th><th>accuracy</th><th>epsilon</th>
<th>duration</th></tr></thead><tbody>{table}</tbody></table>
<h2>Clients</h2><ul id="clients">{clients}</ul>
<p><small>updated {e(updated)}; this page reloads every {int(refresh_s)} s while the run goes
on; the same data as JSON: <a href="status.json">status.json</a></small></p>
</body></html>
"""


def _state_line(snap: dict[str, Any]) -> str:
    state, done = snap["state"], len(snap["rounds"])
    if state == "done":
        return f"finished: {done} of {snap['num_rounds']} rounds"
    if state == "waiting" and snap["connected"] < snap["min_clients"]:
        return (f"waiting for clients: {snap['connected']} of {snap['min_clients']} connected "
                f"({done} of {snap['num_rounds']} rounds done)")
    return f"{state}: round {snap['round']} of {snap['num_rounds']} ({done} done)"


def _plots(rows: list[dict[str, Any]]) -> Iterable[str]:
    def points(key: str) -> list[tuple[float, float]]:
        return [(r["round"], r[key]) for r in rows if r.get(key) is not None]

    yield line_chart("accuracy", {"test accuracy": points("accuracy")})
    yield line_chart("loss", {"evaluation": points("loss"), "training": points("train_loss")})
    spent = {m.value: [(r["round"], r["epsilon"][m.value]) for r in rows
                       if m.value in r["epsilon"]] for m in PrivacyMechanism}
    spent = {name: pts for name, pts in spent.items() if pts}
    if spent:
        yield line_chart("epsilon spent", spent)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class StatusPage:
    """Serves a `StatusBoard` over HTTP (`/` and `/status.json`) from a daemon thread."""

    def __init__(self, board: StatusBoard) -> None:
        self.board = board
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Start serving on `address:port` (0: any free port); returns the port."""
        board = self.board

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    body, kind = render_html(board.snapshot()).encode(), "text/html"
                elif path == "/status.json":
                    body, kind = json.dumps(board.snapshot()).encode(), "application/json"
                else:
                    self.send_error(404, "the status page is / and /status.json")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("status page: " + format, *args)

        try:
            self._server = ThreadingHTTPServer((address, port), Handler)
        except OSError as err:
            raise ConfigError(
                f"cannot serve the status page on {address}:{port}: {err.strerror or err}; "
                "choose another --status-port (server.status_port) or server.status_address"
            ) from err
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-page",
                                        daemon=True)
        self._thread.start()
        bound = int(self._server.server_address[1])
        log.info("status page on http://%s:%d/", address, bound)
        return bound

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
