"""Shared fixtures: a real Redis the tests start on their own port, and the whole
service started the way a user starts it (``whisper-appliance up``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import FIXTURES
from whisper_appliance.embedded_redis import free_port, start_redis


def pytest_configure(config: pytest.Config) -> None:
    if not (FIXTURES / "manifest.json").exists():
        raise pytest.UsageError(f"Speech fixtures not found at {FIXTURES} (set S2T_FIXTURES)")


#: The fixtures here that start a redis-server or the whole stack: their tests are slow.
SERVICE_FIXTURES = frozenset({"redis_url", "stack", "api_stack"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for a service fixture is slow even if its file forgot to say so, so
    ``-m "not slow"`` can never start a Redis or a stack through these fixtures. Tests that
    start things themselves (or through a fixture of their own file) carry the mark there."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


#: Test modules whose every test is slow and whose mere import takes seconds (torch and
#: openai-whisper: about 6 s, a third of the fast tier): ``-m "not slow"`` skips them unread.
SLOW_ONLY_MODULES = frozenset({"test_openai_backend.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    fast_tier = str(config.getoption("markexpr")).split() == ["not", "slow"]
    return True if fast_tier and collection_path.name in SLOW_ONLY_MODULES else None


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A Redis of its own on a free port, stopped afterwards."""
    proc, url = start_redis()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with private_redis() as url:
        yield url


@dataclass
class Stack:
    base_url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    redis_url: str


def start_stack(
    redis_url: str,
    workers: int,
    extra_env: dict[str, str] | None = None,
    *,
    quiet: bool = False,
    log_path: Path | None = None,
) -> Stack:
    """``log_path``: every service's log lines (stderr) go to that file, for tests of the logs."""
    port = free_port()
    env = {**os.environ, "S2T_REDIS_URL": redis_url, "S2T_LOG_JSON": "true", **(extra_env or {})}
    command = [sys.executable, "-m", "whisper_appliance.cli", "up", "--workers", str(workers)]
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log_path.open("ab")) if log_path else None
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stderr=subprocess.DEVNULL if quiet else stderr
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"whisper-appliance up exited with {proc.returncode}")
        try:
            health = httpx.get(f"{base}/health", timeout=1.0)
            if health.status_code == 200 and health.json()["workers"] >= workers:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the stack did not become healthy in 120 s")
        time.sleep(0.25)
    return Stack(base, f"ws://127.0.0.1:{port}/ws", proc, redis_url)


def stop_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGTERM)
    try:
        stack.process.wait(30)
    except subprocess.TimeoutExpired:
        stack.process.kill()


#: ``S2T_RESUME_WINDOW_S`` of the ``stack`` fixture.
STACK_RESUME_WINDOW_S = 15.0


@pytest.fixture(scope="session")
def stack(redis_url: str) -> Iterator[Stack]:
    """Two workers with the bundled tiny.en, on the test's own Redis. The resume window is
    15 s rather than 30 s, so that the test of a session gone after it waits half as long
    (the other resume tests come back within 5 s)."""
    running = start_stack(redis_url, workers=2, extra_env={"S2T_RESUME_WINDOW_S": str(STACK_RESUME_WINDOW_S)})
    yield running
    stop_stack(running)


API_KEY = "test-key-4f1c"


@pytest.fixture(scope="session")
def api_stack() -> Iterator[Stack]:
    """Two workers with S2T_API_KEY set: the OpenAI-compatible API, the CLI and long files.

    On a Redis of its own: workers of two stacks on one Redis would share the queue, and
    each stack's tests count its own workers."""
    with private_redis() as url:
        running = start_stack(url, workers=2, extra_env={"S2T_API_KEY": API_KEY}, quiet=True)
        yield running
        stop_stack(running)
