"""The audio service's memory of the jobs it queued, so that a Redis restart costs nothing.

A Redis that restarts (or a memory-only one that comes back empty) loses the queue, the
job records and every reply published while it was away. The service that queued a
piece is the one that still has its audio, so it keeps each final and file piece it
queued here, bounded, until it is *settled*: answered by a worker (or skipped as no
longer wanted, or handed on by the reaper), which a worker records in Redis
(:func:`shared.queue.settle`) before it drops its claim. A pass of
:mod:`audio_service.requeue` compares the buffer with what Redis holds and decides per
job (:func:`decide`): a job Redis no longer has and nobody settled is queued again under
the same job id, so the gateway's routing and the stream's utterance order still match.

Partials are not kept: the next partial replaces a lost one.

Bounds (``S2T_REQUEUE_BUFFER_SECONDS`` of audio, ``S2T_REQUEUE_BUFFER_JOBS`` jobs): past
either, a job is kept without its audio, a few hundred bytes of routing, so that if Redis
loses it its client gets ``redis_unavailable`` instead of waiting for the watchdog. An
entry older than a job may wait and run (``S2T_JOB_TTL_S + S2T_JOB_TIMEOUT_S``) is
dropped: the gateway has failed it with ``timeout`` by then.

Pure and thread-safe (the enqueueing threads and the requeue pass share it); the caller
passes the clock.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from enum import StrEnum

from shared.config import Settings
from shared.jobs import TranscriptionJob


class Decision(StrEnum):
    KEEP = "keep"  # Redis holds it (queued or running): nothing to do
    DROP = "drop"  # settled, or too old to matter: forget it
    REQUEUE = "requeue"  # Redis lost it and its audio is here: queue it again
    REPORT = "report"  # Redis lost it and its audio was past the bound: tell its client


@dataclass(frozen=True)
class Entry:
    job: TranscriptionJob  # ``pcm`` empty when the audio was past the bound
    added_at: float
    audio_kept: bool


def decide(entry: Entry, *, held: bool, settled: bool, now: float, max_age_s: float) -> Decision:
    """What one requeue pass does with one kept job, given what Redis says of it."""
    if settled or now - entry.added_at > max_age_s:
        return Decision.DROP
    if held:
        return Decision.KEEP
    return Decision.REQUEUE if entry.audio_kept else Decision.REPORT


class RequeueBuffer:
    def __init__(self, max_audio_s: float, max_jobs: int, max_age_s: float) -> None:
        self.max_audio_s = max_audio_s
        self.max_jobs = max_jobs
        self.max_age_s = max_age_s
        self._entries: dict[str, Entry] = {}
        self._audio_s = 0.0
        self._with_audio = 0
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> RequeueBuffer:
        return cls(
            settings.requeue_buffer_seconds,
            settings.requeue_buffer_jobs,
            settings.job_ttl_s + settings.job_timeout_s,
        )

    @staticmethod
    def wants(job: TranscriptionJob) -> bool:
        """Finals, candidates (one may become its utterance's final) and file pieces."""
        return job.kind != "partial"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def audio_s(self) -> float:
        """Seconds of audio kept now."""
        return self._audio_s

    def has_room(self, jobs: list[TranscriptionJob]) -> bool:
        """Whether all of ``jobs`` would be kept with their audio."""
        seconds = sum(j.duration_s for j in jobs if self.wants(j))
        count = sum(1 for j in jobs if self.wants(j))
        with self._lock:
            return self._fits(seconds, count)

    def _fits(self, seconds: float, count: int) -> bool:
        return self._audio_s + seconds <= self.max_audio_s and self._with_audio + count <= self.max_jobs

    def add(self, job: TranscriptionJob, now: float) -> bool:
        """Keep ``job`` until it is settled (a job with the same id is replaced); returns
        whether its audio is kept. Past both bounds (twice ``max_jobs`` entries) nothing is
        kept: the gateway's watchdog still answers it."""
        if not self.wants(job):
            return False
        with self._lock:
            self._pop(job.job_id)
            if self._fits(job.duration_s, 1):
                entry = Entry(job, now, audio_kept=True)
                self._audio_s += job.duration_s
                self._with_audio += 1
            elif len(self._entries) < 2 * self.max_jobs:
                entry = Entry(dataclasses.replace(job, pcm=b""), now, audio_kept=False)
            else:
                return False
            self._entries[job.job_id] = entry
            return entry.audio_kept

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._pop(job_id)

    def forget_job(self, stream_id: str, seq: int) -> None:
        """A stream's job by its seq (a revoked candidate)."""
        with self._lock:
            for job_id in [
                i for i, e in self._entries.items() if e.job.stream_id == stream_id and e.job.seq == seq
            ]:
                self._pop(job_id)

    def forget_stream(self, stream_id: str) -> None:
        """The stream was cancelled (its client has gone): nobody wants its jobs."""
        with self._lock:
            for job_id in [i for i, e in self._entries.items() if e.job.stream_id == stream_id]:
                self._pop(job_id)

    def entries(self) -> list[Entry]:
        """A snapshot, oldest first."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.added_at)

    def _pop(self, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        if entry is not None and entry.audio_kept:
            self._audio_s = max(0.0, self._audio_s - entry.job.duration_s)
            self._with_audio -= 1
