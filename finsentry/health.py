"""Liveness, readiness and Prometheus metrics over HTTP for services without a web server.

``/health`` answers 200 while the service's loop is alive, ``/ready`` 200 while it can do
its work (e.g. its consumer holds partitions), both 503 otherwise, with a JSON body saying
why; ``/metrics`` is the Prometheus text format of the given registry. Runs on a daemon
thread; probes are plain callables the service keeps cheap and thread-safe.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Probe = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Probe,
        ready: Probe,
        registry: CollectorRegistry | None = None,
    ) -> None:
        probes = {"/health": live, "/ready": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in probes:
                    ok, detail = probes[path]()
                    body = json.dumps({"status": "ok" if ok else "failing", "detail": detail})
                    self._send(200 if ok else 503, body.encode(), "application/json")
                elif path == "/metrics" and registry is not None:
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes arrive every few seconds; logging each would drown the service log."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="health-server"
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def http_ok(url: str, timeout_s: float = 3.0) -> bool:
    """True when a GET of ``url`` answers 2xx within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
