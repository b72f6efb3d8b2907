"""The life of a live stream's utterances, as one pure state machine: events in, decisions out.

Two sources tell the gateway about an utterance and they race: the audio service says
over its stream WebSocket when an utterance is over and which job's result is its final
(``final_queued``), and the workers publish each job's result over pub/sub, in any
order and sometimes before that notice. This machine is the single place that decides
what a client sees next; :class:`gateway.recording.Recording` only feeds it and passes
on what it returns. It does no I/O and reads no clock: every input carries ``now``.

States of one utterance (``index`` in its stream)::

    OPEN ──partial──► PARTIAL ──candidate result──► CANDIDATE
      │                  │  ▲                           │ speech resumed / clear
      │                  │  └───── newer partial ───────┤        ▼
      │                  │                              │     REVOKED ──► (index reused)
      └──── final_queued ┴──────────────────────────────┴──► QUEUED
                                                               │ its result (final, the
                                                               │ confirmed candidate's, or
                                                               ▼ an error / expiry)
                                                             READY ──predecessors out──► FINAL | FAILED

Rules:

- finals (and errors in their place) are released in stream order, each exactly once;
- a partial is shown only while its utterance has no answer yet, and only if it is newer
  than the last one shown (or voided by ``clear``);
- a candidate's result becomes the final without a second job when ``final_queued``
  names its seq, whichever of the two arrives first; a revoked candidate's result is
  never shown as final;
- a failed partial is not shown: the utterance's final (or its error) answers for it;
- ``stop`` completes (:class:`RecordingStopped`) once every final the audio service
  counted is out; a stream whose audio service went away fails and ends at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway import events
from gateway.worker_reply import WorkerReply
from shared import protocol
from shared.protocol import ErrorCode


class UtteranceState(StrEnum):
    OPEN = "open"
    PARTIAL = "partial_shown"
    CANDIDATE = "candidate"
    REVOKED = "revoked"
    QUEUED = "queued"
    READY = "ready"
    FINAL = "final"
    FAILED = "failed"


@dataclass
class _Answer:
    """What an utterance's one release will be: its final or its error."""

    message: dict[str, Any]
    error: bool


@dataclass
class Utterance:
    index: int
    state: UtteranceState = UtteranceState.OPEN
    shown_seq: int = -1  # newest partial shown, or voided up to by ``clear``
    candidate: tuple[int, _Answer] | None = None  # (seq, what it becomes if confirmed)
    final_seq: int | None = None  # the job whose result is the final, once queued
    queued_at: float | None = None
    answer: _Answer | None = None


@dataclass
class UtteranceMachine:
    stream_id: str
    model: str
    utterance_id: Callable[[int], str]
    _open: dict[int, Utterance] = field(default_factory=dict)
    _released: dict[int, UtteranceState] = field(default_factory=dict)
    _next: int = 0
    _expected: int | None = None
    ended: bool = False

    # --- what tests and the recording may ask --------------------------------------------

    def state(self, index: int) -> UtteranceState | None:
        if index in self._released:
            return self._released[index]
        record = self._open.get(index)
        return record.state if record is not None else None

    @property
    def released(self) -> int:
        """How many finals (or errors in their place) are out."""
        return self._next

    def pending(self) -> list[int]:
        """Utterances whose final is queued and not yet out."""
        return sorted(i for i, r in self._open.items() if r.final_seq is not None)

    def lag(self, now: float) -> float:
        """How far the stream's results are behind its audio: how long the oldest final
        that is queued and not yet out has waited (0 when none waits)."""
        waits = [now - r.queued_at for r in self._open.values() if r.queued_at is not None]
        return max(0.0, max(waits, default=0.0))

    # --- from the audio service -----------------------------------------------------------

    def speech_started(self, index: int, audio_ms: int) -> list[events.LiveEvent]:
        record = self._record(index)
        if record is not None and record.state is UtteranceState.REVOKED:
            record.state = UtteranceState.OPEN  # the index is used again by new speech
        return [events.SpeechStarted(index, audio_ms)]

    def speech_stopped(self, index: int, audio_ms: int, kept: bool) -> list[events.LiveEvent]:
        return [events.SpeechStopped(index, audio_ms, kept)]

    def commit_empty(self) -> list[events.LiveEvent]:
        return [events.CommitEmpty()]

    def cleared(self, index: int, seq: int) -> list[events.LiveEvent]:
        """The utterance's audio was dropped: its results up to ``seq`` are void."""
        record = self._record(index)
        if record is not None and record.answer is None:
            record.shown_seq = max(record.shown_seq, seq)
            record.candidate = None
            record.state = UtteranceState.REVOKED
        return [events.UtteranceCleared(index)]

    def queued(self, index: int, seq: int, start: float, end: float, now: float) -> list[events.LiveEvent]:
        """The utterance is over; the result of job ``seq`` is its final."""
        record = self._record(index)
        if record is None:
            return []  # its answer was faster than this notice and is out already
        out: list[events.LiveEvent] = [events.UtteranceQueued(index, self.utterance_id(index), start, end)]
        record.final_seq, record.queued_at = seq, now
        if record.answer is None:
            record.state = UtteranceState.QUEUED
        if record.candidate is not None and record.candidate[0] == seq:  # its result came first
            out += self._settle(record, record.candidate[1], now)
        return out

    def stopped(self, finals: int, now: float) -> list[events.LiveEvent]:
        self._expected = finals
        return self._maybe_finish()

    def stream_error(self, code: str, message: str) -> list[events.LiveEvent]:
        return [events.RecordingFailed(code, message)]

    def abandon(self, now: float, code: ErrorCode, message: str) -> list[events.LiveEvent]:
        """End the stream here (the lag watchdog gave up on it): every queued final is
        answered with ``code``, then the recording fails and stops; late results are dropped."""
        if self.ended:
            return []
        out = self.expire(now, -1.0, code, message)
        if self.ended:  # the last expected final was among them
            return out
        return [*out, events.RecordingFailed(code, message), *self._end()]

    def lost(self) -> list[events.LiveEvent]:
        """The audio service's connection ended before ``stopped``: nothing more will come."""
        if self._expected is not None or self.ended:
            return []
        out: list[events.LiveEvent] = [
            events.RecordingFailed(
                ErrorCode.AUDIO_SERVICE_UNAVAILABLE,
                "The audio service stopped during the recording; start again",
            )
        ]
        return out + self._end()

    # --- from the workers ---------------------------------------------------------------

    def result(
        self, reply: WorkerReply, now: float, *, latency_now: float | None = None
    ) -> list[events.LiveEvent]:
        """A job's result. ``latency_now`` (wall clock) stamps ``latency_ms`` on the message."""
        record = self._record(reply.index)
        if record is None or self.ended:
            return []  # its utterance is answered, or the recording is over
        if reply.kind == "candidate":
            if record.final_seq == reply.seq:
                return self._settle(record, _confirmed(reply, latency_now), now)
            if record.state is UtteranceState.REVOKED and reply.seq <= record.shown_seq:
                return []  # cleared before its result came
            record.candidate = (reply.seq, _confirmed(reply, latency_now))
            if record.answer is None and record.final_seq is None:
                record.state = UtteranceState.CANDIDATE
            return self._partial(record, reply, latency_now, whole=True)
        if reply.kind == "partial":
            return self._partial(record, reply, latency_now, whole=False)
        return self._settle(record, _Answer(reply.with_latency(latency_now), reply.is_error), now)

    # --- timers and outages -------------------------------------------------------------

    def expire(self, now: float, max_wait_s: float, code: ErrorCode, message: str) -> list[events.LiveEvent]:
        """A final queued more than ``max_wait_s`` ago with no answer (its worker vanished,
        or Redis lost it past the audio service's requeue bound) becomes an error, so a stop
        always completes. A Redis reconnect alone fails nothing: lost jobs are queued again."""
        out: list[events.LiveEvent] = []
        for index in self.pending():
            record = self._open.get(index)
            if record is None or record.answer is not None or record.queued_at is None:
                continue
            if index == self._next and now - record.queued_at > max_wait_s:
                error = protocol.error(code, message, utterance_id=self.utterance_id(index))
                out += self._settle(record, _Answer(error, True), now)
        return out

    # --- inside ---------------------------------------------------------------------------

    def _record(self, index: int) -> Utterance | None:
        """The utterance's open record (made on first mention); None once it is released."""
        if index < self._next or index in self._released:
            return None
        record = self._open.get(index)
        if record is None:
            record = self._open[index] = Utterance(index)
        return record

    def _partial(
        self, record: Utterance, reply: WorkerReply, latency_now: float | None, *, whole: bool
    ) -> list[events.LiveEvent]:
        if reply.is_error or record.answer is not None or reply.seq <= record.shown_seq:
            return []
        record.shown_seq = reply.seq
        if record.state in (UtteranceState.OPEN, UtteranceState.REVOKED):
            record.state = UtteranceState.PARTIAL
        message = {**_stamped(reply, latency_now), "final": False}
        return [events.PartialText(record.index, self.utterance_id(record.index), message, whole=whole)]

    def _settle(self, record: Utterance, answer: _Answer, now: float) -> list[events.LiveEvent]:
        if record.answer is not None:
            return []  # exactly one answer per utterance
        record.answer = answer
        record.candidate = None
        record.state = UtteranceState.READY
        return self._release(now)

    def _release(self, now: float) -> list[events.LiveEvent]:
        out: list[events.LiveEvent] = []
        while (record := self._open.get(self._next)) is not None and record.answer is not None:
            del self._open[self._next]
            index, answer = record.index, record.answer
            waited = None if record.queued_at is None else max(0.0, now - record.queued_at)
            utterance_id = self.utterance_id(index)
            if answer.error:
                self._released[index] = UtteranceState.FAILED
                out.append(
                    events.UtteranceFailed(
                        index,
                        utterance_id,
                        str(answer.message.get("code") or ErrorCode.INTERNAL_ERROR),
                        str(answer.message.get("message") or ""),
                        waited,
                    )
                )
            else:
                self._released[index] = UtteranceState.FINAL
                out.append(events.FinalText(index, utterance_id, answer.message, waited))
            self._next += 1
        return out + self._maybe_finish()

    def _maybe_finish(self) -> list[events.LiveEvent]:
        if self._expected is not None and self._next >= self._expected:
            return self._end()
        return []

    def _end(self) -> list[events.LiveEvent]:
        if self.ended:
            return []
        self.ended = True
        self._open.clear()
        return [events.RecordingStopped(self.model, self._next)]


def _stamped(reply: WorkerReply, latency_now: float | None) -> dict[str, Any]:
    return reply.with_latency(latency_now) if latency_now is not None else dict(reply.message)


def _confirmed(reply: WorkerReply, latency_now: float | None = None) -> _Answer:
    """A candidate's result, now that its pause is confirmed: the final itself."""
    message = _stamped(reply, latency_now)
    if reply.is_error:
        return _Answer(message, True)
    return _Answer({**message, "final": True}, False)
