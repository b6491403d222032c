"""A JSON HTTP server on loopback for tests that need one to talk to (a fake worker, a fake
Prometheus): ``answer(path)`` gives each GET its status, extra headers and body (an object
sent as JSON, or bytes as they are); every path asked is recorded. A context manager: the
server runs on a daemon thread and is shut down and joined on exit."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: ``(status, headers, body)`` of one answer
Answer = tuple[int, dict[str, str], Any]


class JsonServer:
    """Answers every GET on ``127.0.0.1:port`` (0: a free port) with ``answer(path)``."""

    def __init__(self, answer: Callable[[str], Answer], port: int = 0) -> None:
        self.answer = answer
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                status, headers, body = server.answer(self.path)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> JsonServer:
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
