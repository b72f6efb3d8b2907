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
- the pool is one queue served by its ``c`` live workers, and a final's model time ``s``
  is nearly constant (its window is padded to 30 s), so the pool is an M/D/c queue: at a
  utilisation ``rho`` a final waits about ``rho ** sqrt(2 (c + 1)) / (2 c (1 - rho)) * s``
  (Sakasegawa's approximation for M/M/c, halved for constant service times);
- the latency target counts from the end of speech, and the audio service queues an
  utterance's final audio as a candidate :data:`FINAL_HEAD_START_S` after it, so a final
  meets the target while ``FINAL_HEAD_START_S + wait + s <= target``: a worker may be busy
  the largest ``rho`` whose wait fits in that slack, capped at :data:`MAX_UTILISATION`;
- capacity is the sum over live workers of usable time / stream cost (at least
  :data:`MIN_STREAMS_PER_WORKER` each), rounded down.

The rule before this one, ``rho = 1 - s / target`` (an M/M/1 queue per worker, its mean
response ``s / (1 - rho)`` within the target), admitted 5-7 streams on two tiny.en workers
of a 2-core machine, where 8 streams whose utterances end at different moments measured
settled p50 0.81 s and p95 1.57 s (``bench.live_capacity --stagger 5``): it priced every
final as if it waited behind a random, exponentially long job at one worker, and gave the
final no credit for the candidate's head start.

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
#: Seconds after the end of speech that the audio service queues the utterance's final
#: audio (the candidate: ``audio_service.segmenter.SegmenterOptions.tail_s``; a fast test
#: keeps the two equal). The latency target counts from the end of speech.
FINAL_HEAD_START_S = 0.2
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
    final_audio_s: float | None = None  # seconds of audio per final job

    def observe(self, kind: str, took_s: float, audio_s: float) -> None:
        """One live job done in ``took_s`` of model time (a batch's time shared by its jobs).

        ``final_rtf`` is the ratio of the running means (model seconds over audio seconds),
        not a running mean of each job's ratio: a final's time is mostly its fixed 30 s
        window, so a 1 s "Come quickly." has four times the ratio of a 4 s sentence, and the
        mean of ratios priced a stream's finals about a third above what they cost."""
        if kind == "partial":
            self.partial_job_s = ewma(self.partial_job_s, took_s)
            return
        self.final_job_s = ewma(self.final_job_s, took_s)
        if audio_s > 0:
            self.final_audio_s = ewma(self.final_audio_s, audio_s)
        if self.final_audio_s:
            self.final_rtf = self.final_job_s / self.final_audio_s

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

        return cls(*(number(key) for key in ("final_rtf", "final_job_s", "partial_job_s", "final_audio_s")))


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


def final_wait_s(rho: float, workers: int, final_job_s: float) -> float:
    """A final's mean wait in the queue at utilisation ``rho`` of ``workers`` (M/D/c)."""
    if rho <= 0.0:
        return 0.0
    if rho >= 1.0:
        return math.inf
    c = max(1, workers)
    return rho ** math.sqrt(2 * (c + 1)) / (2 * c * (1 - rho)) * final_job_s


def usable_share(final_job_s: float, target_s: float, workers: int) -> float:
    """The busiest a worker may be while a final still meets the target (0: never)."""
    slack = target_s - FINAL_HEAD_START_S - final_job_s
    if slack <= 0:
        return 0.0
    low, high = 0.0, MAX_UTILISATION
    if final_wait_s(high, workers, final_job_s) <= slack:
        return high
    for _ in range(40):  # bisection: the wait rises with rho
        mid = (low + high) / 2
        low, high = (mid, high) if final_wait_s(mid, workers, final_job_s) <= slack else (low, mid)
    return low


def worker_streams(
    costs: JobCosts, target_s: float, partial_interval_s: float, workers: int = 1
) -> float | None:
    """Streams one of ``workers`` live workers can carry (fractional), or None when it has
    no figures yet."""
    cost = stream_cost(costs, partial_interval_s)
    if cost is None or costs.final_job_s is None:
        return None
    usable = usable_share(costs.final_job_s, target_s, workers)
    return usable / cost if cost > 0 else float(COLD_STREAMS_PER_WORKER)


def pool_capacity(workers: Iterable[JobCosts], target_s: float, partial_interval_s: float) -> Capacity:
    pool = list(workers)
    total, count, measured, costs = 0.0, len(pool), True, []
    for worker in pool:
        streams = worker_streams(worker, target_s, partial_interval_s, len(pool))
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
