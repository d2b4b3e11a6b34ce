"""A small HTTP service that keeps answering requests while the SDK trains in the background.

    python clients/http_service.py localhost:8080 site1.csv --port 8000 --state-dir ~/.fl/svc

    GET  /status   the federated client's phase and counters, as JSON
    GET  /predict?x=0.1,0.2,...   the probability the current local model gives these features
    POST /pause    stop taking federated work (the client leaves until /resume)
    POST /resume   take work again

The service owns its process: it, not the SDK, handles SIGTERM/SIGINT (stop the client, then
the server) and configures logging. It prints `listening on http://HOST:PORT` when ready.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
from csv_client import LogisticRegression, load_csv  # a sibling example (run as a script)

from fedcore.client import (
    BackgroundClient,
    Callbacks,
    FitResult,
    FunctionalApp,
    Reported,
    TrainConfig,
)

log = logging.getLogger("http_service")


class Service:
    """The host program's state: the model it serves and the federated client behind it."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model = model
        self.params = model.initial()
        self.accepting = threading.Event()
        self.accepting.set()
        self.client: BackgroundClient | None = None

    def status(self) -> dict[str, object]:
        assert self.client is not None
        s = self.client.status
        return {"phase": s.phase.value, "client_id": s.client_id, "selected": s.tasks_selected,
                "trained": s.tasks_trained, "reported": s.tasks_reported,
                "refused": s.tasks_refused, "last_round": s.last_round,
                "accepting": self.accepting.is_set(), "running": self.client.running}

    def predict(self, features: list[float]) -> float:
        w, b = self.params["w"], self.params["b"]
        return float(1.0 / (1.0 + np.exp(-(np.asarray(features, np.float32) @ w + b[0]))))

    def fit(self, params: dict[str, np.ndarray], config: TrainConfig) -> FitResult:
        """Train, and serve the newly trained model from now on."""
        result = self.model.fit(params, config)
        self.params = {k: np.asarray(v) for k, v in result.params.items()}
        return result

    def on_reported(self, event: Reported) -> None:
        log.info("round %d reported", event.round)


def make_handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/status":
                self._reply(200, service.status())
            elif url.path == "/predict":
                raw = parse_qs(url.query).get("x", [""])[0]
                try:
                    self._reply(200, {"p": service.predict([float(v) for v in raw.split(",")])})
                except ValueError as err:
                    self._reply(400, {"error": str(err)})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path == "/pause":
                service.accepting.clear()
            elif self.path == "/resume":
                service.accepting.set()
            else:
                self._reply(404, {"error": "not found"})
                return
            self._reply(200, service.status())

        def _reply(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("server", help="coordinator host:port")
    p.add_argument("csv", type=Path, help="local training data (see csv_client.py)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--client-id")
    p.add_argument("--state-dir")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    x, y = load_csv(args.csv, None)
    service = Service(LogisticRegression(x, y))
    app = FunctionalApp(get_parameters=service.model.initial, fit=service.fit,
                        evaluate=service.model.evaluate)
    service.client = BackgroundClient(
        app, args.server, client_id=args.client_id, state_dir=args.state_dir,
        eligible=service.accepting.is_set, eligibility_check_s=0.5,
        callbacks=Callbacks(on_reported=service.on_reported),
    )
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(service))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    server_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    server_thread.start()
    service.client.start()
    print(f"listening on http://{args.host}:{httpd.server_port}", flush=True)
    while not stopping.wait(0.5):  # the service runs until told to stop, training or not
        pass
    stopped = service.client.stop(timeout=10)
    httpd.shutdown()
    httpd.server_close()
    print(json.dumps({**service.status(), "stopped_cleanly": stopped}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
