"""A worker's own HTTP port: ``/metrics`` for Prometheus and ``/health`` for container
health checks.

Workers are RQ processes with no web framework; each replica must still be scraped on
its own (Prometheus finds every replica by DNS), so a tiny threaded ``http.server``
runs beside the job loop. It reads the worker's state, never blocks a job, and dies with
the process (daemon thread).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

from shared import metrics
from whisper_service.context import WorkerContext

log = structlog.get_logger()


def start(ctx: WorkerContext, host: str, port: int) -> ThreadingHTTPServer | None:
    """Serve on ``host:port`` in a daemon thread; ``None`` (and a warning) when the port
    is taken, because a worker that cannot be scraped can still transcribe."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                metrics.WORKER_BUSY.set(1 if ctx.info.busy else 0)
                metrics.MODELS_LOADED.set(len(ctx.models.names()))
                body, content_type = metrics.exposition(metrics.WORKER_REGISTRY)
                self._reply(200, body, content_type)
            elif path == "/health":
                health = {
                    "status": "ok",
                    "worker_id": ctx.info.id,
                    "models": ctx.models.names(),
                    "busy": ctx.info.busy,
                    "jobs_done": ctx.info.jobs_done,
                }
                self._reply(200, json.dumps(health).encode(), "application/json")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds would drown the job logs."""

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        log.warning("worker_metrics_unavailable", host=host, port=port, error=str(exc))
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-http").start()
    log.info("worker_metrics_listening", host=host, port=server.server_address[1])
    return server
