"""A live stream's shared bookkeeping in Redis: which of its queued jobs are still wanted.

The audio service queues a stream's jobs and moves on; the workers that take them must
know, when they start one, whether anyone still wants it. Both sides (and the audio
service's reaper) read and write one hash per stream
(:func:`shared.redis_keys.stream_key`) through this module only, so its fields are
spelled here and nowhere else:

- ``latest``: seq of the stream's newest job. A partial older than it is skipped: under
  load partials thin out, and workers spend their time on finals and the freshest partial.
- ``revoked:<seq>``: that candidate (a probable final sent while its pause was being
  confirmed) is void because speech resumed. Candidates are revoked by name, not by
  ``latest``, because several may be queued and finish in any order.
- ``cancelled``: the client has gone; every queued job of the stream is skipped.
- ``done``: seq of the last partial a worker finished or skipped (or the reaper gave up
  on): the audio service sends a stream's next partial only after it.
- ``wait_ms``: how long that partial waited in the queue before a worker took it: the
  load figure the audio service's partial pacer (:mod:`audio_service.pacer`) reads.
- ``cdone:<seq>``: that candidate was answered or skipped; while one of the open
  utterance's candidates is not, no partial is sent (its answer shows in the partial's place).

Every write renews the key's expiry (``job_ttl_s + job_timeout_s``: as long as any job of
the stream may still wait and run), so a stream's hash never outlives its jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.config import Settings
from shared.jobs import TranscriptionJob
from shared.redis_keys import stream_key

_LATEST = "latest"
_DONE = "done"
_CANCELLED = "cancelled"
_REVOKED = "revoked:"
_WAIT_MS = "wait_ms"
_CANDIDATE_DONE = "cdone:"

#: ``latest`` of a cancelled stream: above any seq it will ever have.
_CANCELLED_SEQ = 2**62


@dataclass(frozen=True)
class Progress:
    """What the audio service reads before it sends a stream's next partial (one round trip)."""

    partials_done: int  # seq of the last partial finished or skipped (0: none)
    partial_wait_s: float | None  # that partial's queue wait (None: not recorded)
    candidate_done: bool  # the candidate asked about was answered or skipped (True: none asked)


class StreamLedger:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    @classmethod
    def for_settings(cls, client: redis.Redis, settings: Settings) -> StreamLedger:
        """A ledger whose keys live as long as a stream's jobs may wait and run."""
        return cls(client, settings.job_ttl_s + settings.job_timeout_s)

    def _write(self, stream_id: str, fields: dict[str, int]) -> None:
        """One round trip: the fields and the key's renewed expiry."""
        key = stream_key(stream_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self._ttl_s)
        pipe.execute()

    # --- the audio service ---------------------------------------------------------------

    def supersede(self, stream_id: str, seq: int, *, revoke: int | None = None) -> None:
        """Job ``seq`` is the stream's newest (it is about to be queued, or an utterance was
        cleared): older partials are skipped. ``revoke``: that candidate is void too, in
        the same round trip."""
        fields = {_LATEST: seq}
        if revoke is not None:
            fields[_REVOKED + str(revoke)] = 1
        self._write(stream_id, fields)

    def revoke_candidate(self, stream_id: str, seq: int) -> None:
        """Candidate ``seq`` is void (speech resumed): a worker that has not started it skips it."""
        self._write(stream_id, {_REVOKED + str(seq): 1})

    def cancel(self, stream_id: str) -> None:
        """The client has gone: every job of the stream not yet started is skipped."""
        self._write(stream_id, {_LATEST: _CANCELLED_SEQ, _CANCELLED: 1})

    def partials_done(self, stream_id: str) -> int:
        """Seq of the last partial a worker finished or skipped for this stream (0: none)."""
        done = self._redis.hget(stream_key(stream_id), _DONE)
        return int(done) if done is not None else 0

    def progress(self, stream_id: str, candidate: int | None = None) -> Progress:
        """The stream's partial pacing figures, and whether candidate ``candidate`` is done."""
        fields = [_DONE, _WAIT_MS, _CANDIDATE_DONE + str(candidate if candidate is not None else 0)]
        done, wait_ms, cdone = self._redis.hmget(stream_key(stream_id), fields)
        return Progress(
            int(done) if done is not None else 0,
            int(wait_ms) / 1000 if wait_ms is not None and int(wait_ms) >= 0 else None,
            candidate is None or cdone is not None,
        )

    def is_cancelled(self, stream_id: str) -> bool:
        return self._redis.hget(stream_key(stream_id), _CANCELLED) is not None

    # --- workers and the reaper ----------------------------------------------------------

    def is_superseded(self, job: TranscriptionJob) -> bool:
        """Whether nobody wants this stream job any more: its stream was cancelled, it is a
        revoked candidate, or it is a partial older than the stream's newest job. A job of
        no stream (a file's piece) is always wanted."""
        if job.stream_id is None:
            return False
        latest, revoked, cancelled = self._redis.hmget(
            stream_key(job.stream_id), [_LATEST, _REVOKED + str(job.seq), _CANCELLED]
        )
        if cancelled:
            return True
        if job.kind == "candidate":  # each candidate is revoked by name: they finish in any order
            return revoked is not None
        return job.kind == "partial" and latest is not None and int(latest) > job.seq

    def mark_partial_done(self, job: TranscriptionJob, waited_s: float | None = None) -> None:
        """A partial was answered, skipped or lost: the stream may have its next one
        (``waited_s``: its time in the queue, for the pacer). A candidate answered or
        skipped is noted too (partials of its utterance wait for it); finals leave the
        ledger alone."""
        if job.stream_id is None:
            return
        if job.kind == "partial":
            # -1: not known (the reaper gave it up), so an older partial's wait is not read as its
            wait_ms = max(0, round(waited_s * 1000)) if waited_s is not None else -1
            self._write(job.stream_id, {_DONE: job.seq, _WAIT_MS: wait_ms})
        elif job.kind == "candidate":
            self._write(job.stream_id, {_CANDIDATE_DONE + str(job.seq): 1})
