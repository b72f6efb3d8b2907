"""How many live streams the worker pool can carry at its latency target: pure arithmetic
over the figures the workers publish in their heartbeats.

Each worker keeps an exponentially weighted mean of its own live job costs
(:class:`JobCosts`): for finals (and candidates, which become finals) the model seconds
per second of utterance audio and per job; for partials the model seconds per job. A
partial is priced per job, not per audio second: its cost is mostly the encoder's, over
a window of ``S2T_PARTIAL_WINDOW_S`` or its own length plus 2 s (a full 30 s with the
setting 0), and its nominal cadence is fixed (one per ``S2T_PARTIAL_INTERVAL_S`` of new speech),
so the running mean is what the pool pays per partial, short windows included. The
figures travel in the heartbeat, so a worker that dies drops out of the sum within the
heartbeat's TTL (at once under ``up``, which deletes a dead worker's key), and one that
joins counts from its first beat.

The model (:func:`pool_capacity`), per worker:

- a stream costs ``duty * (final_rtf + PARTIAL_SHARE * partial_job_s / partial_interval_s)``
  worker-seconds per second: finals in full, partials at the share of their nominal
  cadence a stream keeps when the pool is full (partials are thinned first, finals never);
- a worker may be busy ``1 - final_job_s / target`` of its time: a final that meets a
  worker that busy waits, on average, about one final's time (an M/M/1 queue's response
  time ``s / (1 - rho)`` stays within the target at that load), capped at
  :data:`MAX_UTILISATION`;
- capacity is the sum over live workers of usable time / stream cost (at least
  :data:`MIN_STREAMS_PER_WORKER` each), rounded down.

A worker with no live figures yet (just started, or it has served only files) counts for
:data:`COLD_STREAMS_PER_WORKER`, and the result says it is not measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

#: Weight of the newest job in the means: about the last ten jobs count.
EWMA_ALPHA = 0.2
#: Share of a live stream's time that is speech (a conversation with pauses; a monologue
#: is nearer 0.9). Finals and partials are only made of speech.
SPEECH_DUTY = 0.7
#: Share of the nominal partial cadence a stream keeps at capacity: partials are thinned
#: (a worker skips a superseded partial) before any final waits.
PARTIAL_SHARE = 0.5
#: A worker never plans to be busier than this, however cheap its finals.
MAX_UTILISATION = 0.85
#: Streams a live worker counts for at least: a pool too slow for its target (a final alone
#: takes longer, e.g. on a machine loaded by other work) still serves one stream per worker
#: rather than refuse everyone; the lag watchdog bounds what that stream waits.
MIN_STREAMS_PER_WORKER = 1
#: Streams a live worker without figures counts for: deliberately low, so that a cold pool
#: refuses early rather than admit a burst it cannot carry; raised by its first jobs.
COLD_STREAMS_PER_WORKER = 2


def ewma(previous: float | None, value: float, alpha: float = EWMA_ALPHA) -> float:
    return value if previous is None else previous + alpha * (value - previous)


@dataclass
class JobCosts:
    """A worker's running means of its live jobs' model time, published in its heartbeat."""

    final_rtf: float | None = None  # model seconds per second of audio, finals and candidates
    final_job_s: float | None = None  # model seconds per final job
    partial_job_s: float | None = None  # model seconds per partial job

    def observe(self, kind: str, took_s: float, audio_s: float) -> None:
        """One live job done in ``took_s`` of model time (a batch's time shared by its jobs)."""
        if kind == "partial":
            self.partial_job_s = ewma(self.partial_job_s, took_s)
            return
        self.final_job_s = ewma(self.final_job_s, took_s)
        if audio_s > 0:
            self.final_rtf = ewma(self.final_rtf, took_s / audio_s)

    @property
    def measured(self) -> bool:
        return self.final_rtf is not None and self.final_job_s is not None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> JobCosts:
        """From a heartbeat; anything malformed (an older worker's) reads as no figures."""
        if not isinstance(data, dict):
            return cls()

        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) and value >= 0 else None

        return cls(number("final_rtf"), number("final_job_s"), number("partial_job_s"))


@dataclass(frozen=True)
class Capacity:
    streams: int  # live streams the pool can carry at the target
    workers: int  # live workers counted
    measured: bool  # False: at least one worker counted with the cold default
    stream_cost: float | None  # mean worker-seconds per second one stream needs (measured workers)

    def describe(self) -> str:
        basis = "measured" if self.measured else "partly a cold-start default"
        return f"{self.streams} live streams on {self.workers} workers ({basis})"


def stream_cost(costs: JobCosts, partial_interval_s: float) -> float | None:
    """Worker-seconds per second one live stream needs on this worker; None without figures.
    A worker that has done no partial yet prices one as a final job (greedy partials cost
    a little less: the estimate errs on the safe side)."""
    if costs.final_rtf is None or costs.final_job_s is None:
        return None
    partial_job_s = costs.partial_job_s if costs.partial_job_s is not None else costs.final_job_s
    partial = partial_job_s / max(partial_interval_s, 0.1)
    return SPEECH_DUTY * (costs.final_rtf + PARTIAL_SHARE * partial)


def worker_streams(costs: JobCosts, target_s: float, partial_interval_s: float) -> float | None:
    """Streams one worker can carry (fractional), or None when it has no figures yet."""
    cost = stream_cost(costs, partial_interval_s)
    if cost is None or costs.final_job_s is None:
        return None
    usable = min(MAX_UTILISATION, max(0.0, 1.0 - costs.final_job_s / max(target_s, 1e-3)))
    return usable / cost if cost > 0 else float(COLD_STREAMS_PER_WORKER)


def pool_capacity(workers: Iterable[JobCosts], target_s: float, partial_interval_s: float) -> Capacity:
    total, count, measured, costs = 0.0, 0, True, []
    for worker in workers:
        count += 1
        streams = worker_streams(worker, target_s, partial_interval_s)
        if streams is None:
            measured = False
            total += COLD_STREAMS_PER_WORKER
        else:
            total += max(float(MIN_STREAMS_PER_WORKER), streams)
            costs.append(stream_cost(worker, partial_interval_s) or 0.0)
    mean_cost = round(sum(costs) / len(costs), 4) if costs else None
    # A hair of slack so that 3.9999 (float noise on an exact 4) still counts as 4.
    return Capacity(math.floor(total + 1e-6), count, measured and count > 0, mean_cost)


@dataclass(frozen=True)
class Limit:
    """What admission lets in now: the smaller of the measured capacity and the static cap."""

    streams: int
    reason: str  # what the limit is: "capacity", "max_live_streams" or "no_workers"


def admission_limit(capacity: Capacity, max_live_streams: int) -> Limit:
    """``max_live_streams`` 0: no static cap."""
    if capacity.workers == 0:
        return Limit(0, "no_workers")
    if 0 < max_live_streams <= capacity.streams:
        return Limit(max_live_streams, "max_live_streams")
    return Limit(capacity.streams, "capacity")
