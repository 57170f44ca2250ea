"""A webhook receiver on loopback for the monitor's alert tests (test helper): records what it
was sent and answers ``/redirect`` with a 307 to ``Hooks.redirect_to``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


class Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # bodies, in order
    paths: list[str] = []  # the path each body was posted to
    redirect_to: str = ""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", Hooks.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        Hooks.received.append(body)
        Hooks.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def hook_server() -> Iterator[str]:
    """The receiver's base URL (``http://127.0.0.1:PORT``), cleared of earlier posts."""
    Hooks.received, Hooks.paths, Hooks.redirect_to = [], [], ""
    server = HTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
