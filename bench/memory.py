"""Resident memory of a running ``whisper-appliance up``, per service.

``up`` starts each service as a child ``python -m whisper_appliance.cli ROLE``; the
role is read from that command line (workers numbered in start order). A service's
own child processes are summed apart as ``ROLE children`` (the audio service's ffmpeg
decoders: part of what a live stream costs). Redis is a separate process the bench
started, probed by pid. RSS counts shared library pages in every process, so the sum
over-states the machine total a little; it is what ``top`` and container limits show
per process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.common import Running

MB = 1024 * 1024


def _rss(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a decoder that ended while we looked
            total += p.memory_info().rss
    return total / MB


def rss_by_role(running: Running) -> dict[str, float]:
    """MB per service: ``up`` (the supervisor itself), ``gateway``, ``audio``,
    ``worker-0`` … ``worker-N``, ``redis``; a service's own children (the audio
    service's ffmpeg decoders) as ``ROLE children`` when it has any."""
    up = psutil.Process(running.up_pid)
    out: dict[str, float] = {"up": _rss([up])}
    workers = 0
    for child in up.children(recursive=False):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        role = (
            cmdline[cmdline.index("whisper_appliance.cli") + 1] if "whisper_appliance.cli" in cmdline else ""
        )
        if role == "worker":
            role = f"worker-{workers}"
            workers += 1
        role = role or child.name()
        out[role] = _rss([child])
        with contextlib.suppress(psutil.NoSuchProcess):
            if descendants := child.children(recursive=True):
                out[f"{role} children"] = _rss(descendants)
    out["redis"] = _rss([psutil.Process(running.redis_pid)])
    return {role: round(mb, 1) for role, mb in out.items()}


@dataclass
class MemoryLog:
    """RSS by service of every stack the suite starts: once idle (right after start,
    models loaded) and once after the load the section put on it."""

    stacks: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def watch(self, name: str, running: Running) -> Iterator[None]:
        entry: dict[str, Any] = {"name": name, "idle": rss_by_role(running)}
        self.stacks.append(entry)
        yield
        entry["after_load"] = rss_by_role(running)


def watching(log: MemoryLog | None, name: str, running: Running) -> contextlib.AbstractContextManager[None]:
    return log.watch(name, running) if log is not None else contextlib.nullcontext()
