"""What every benchmark shares: the machine line, a service to measure, the JSON report."""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Iterator
from typing import Any

from shared.config import cpu_count
from tests.conftest import private_redis, start_stack, stop_stack


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {cpu_count()} cores, Python {platform.python_version()}"


@contextlib.contextmanager
def service(server: str | None, *, workers: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """The /ws URL of ``server`` when given, else of a ``whisper-appliance up`` started on
    loopback with its own Redis for the duration of the block."""
    if server is not None:
        yield server
        return
    with private_redis() as redis_url:
        stack = start_stack(redis_url, workers=workers, extra_env=env, quiet=True)
        try:
            yield stack.ws_url
        finally:
            stop_stack(stack)


def write_report(path: str | None, rows: list[dict[str, Any]], **settings: Any) -> None:
    if path:
        with open(path, "w") as out:
            json.dump({"machine": machine(), **settings, "rows": rows}, out, indent=2)
