"""What every benchmark shares: the machine line, a service to measure, the JSON report."""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.config import cpu_count
from tests.conftest import start_stack, stop_stack
from whisper_appliance.embedded_redis import start_redis


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {cpu_count()} cores, Python {platform.python_version()}"


@dataclass(frozen=True)
class Running:
    """A ``whisper-appliance up`` the bench started: its URLs and the process ids a
    memory probe needs (``up`` itself, whose children are the services, and its Redis)."""

    ws_url: str
    base_url: str
    up_pid: int
    redis_pid: int


@contextlib.contextmanager
def running_stack(*, workers: int, env: dict[str, str] | None = None) -> Iterator[Running]:
    """``whisper-appliance up`` on loopback with a Redis of its own, stopped after the block."""
    redis_proc, redis_url = start_redis()
    try:
        stack = start_stack(redis_url, workers=workers, extra_env=env, quiet=True)
        try:
            yield Running(stack.ws_url, stack.base_url, stack.process.pid, redis_proc.pid)
        finally:
            stop_stack(stack)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


@contextlib.contextmanager
def service(server: str | None, *, workers: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """The /ws URL of ``server`` when given, else of a ``whisper-appliance up`` started on
    loopback with its own Redis for the duration of the block."""
    if server is not None:
        yield server
        return
    with running_stack(workers=workers, env=env) as running:
        yield running.ws_url


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, int]]) -> None:
    """Rows as a right-aligned text table; ``columns``: (header, row key, width)."""
    print("".join(f"{header:>{width}}" for header, _, width in columns))
    for row in rows:
        print("".join(f"{row.get(key)!s:>{width}}" for _, key, width in columns))


def write_report(path: str | None, rows: list[dict[str, Any]], **settings: Any) -> None:
    if path:
        with open(path, "w") as out:
            json.dump({"machine": machine(), **settings, "rows": rows}, out, indent=2)


def live_latencies(
    messages: list[dict[str, Any]],
    received_at: list[float],
    *,
    chunk_s: float,
    tail_s: float,
    preroll_s: float,
) -> tuple[list[float], list[float]]:
    """(settled, first text) latencies of one live ``/ws`` stream paced at one chunk per
    ``chunk_s`` (chunk ``i`` sent at ``i * chunk_s``, ``received_at`` on the same clock).

    An utterance's ``start`` and ``end`` include the audio the segmenter keeps around its
    speech (``preroll_s`` before, ``tail_s`` after), so its speech runs from ``start +
    preroll_s`` to ``end - tail_s``. Settled: from sending the chunk that holds the end of
    its speech to its final. First text: from sending the chunk that holds its first
    speech to the first transcript with words in it; an empty partial (speech heard,
    nothing readable yet) shows the user nothing, so it is not text.
    """
    shown: set[str] = set()
    settled, first = [], []
    for message, at in zip(messages, received_at, strict=True):
        if message.get("type") != "transcript":
            continue
        uid = message["utterance_id"]
        if uid not in shown and message["transcript"].strip():
            shown.add(uid)
            onset = message["start"] + preroll_s if message["start"] > 0 else 0.0
            first.append(at - int(onset / chunk_s) * chunk_s)
        if message["final"]:
            settled.append(at - int(max(0.0, message["end"] - tail_s) / chunk_s) * chunk_s)
    return settled, first
