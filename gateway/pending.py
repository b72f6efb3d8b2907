"""Bookkeeping for one uploaded file: its pieces come back from different workers in any
order, and the client gets them in file order, then :class:`gateway.events.FileDone`.

Pure: replies in, typed events out; the caller passes the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway import events
from gateway.worker_reply import WorkerReply
from shared import protocol


@dataclass
class PendingRequest:
    internal_id: str
    client_request_id: str | None
    deadline: float
    source: str = "upload"
    received_at: float = field(default_factory=time.monotonic)
    count: int | None = None
    duration_s: float = 0.0
    utterance_ids: list[str] = field(default_factory=list)
    next_index: int = 0
    _buffer: dict[int, events.PieceDone | events.PieceFailed] = field(default_factory=dict)

    def queued(self, pieces: list[str], duration_s: float) -> list[events.FileEvent]:
        """The audio service decoded and queued the file as these pieces."""
        self.utterance_ids = pieces
        self.duration_s = duration_s
        self.count = len(pieces)
        out: list[events.FileEvent] = [events.FileQueued(self.client_request_id, self.count, duration_s)]
        if not pieces:  # no speech: say so rather than send silence to the model
            out.append(events.PieceDone(self.client_request_id, 0, self._no_speech_transcript()))
        return out + self._finish_if_done()

    def add(self, reply: WorkerReply, now: float | None = None) -> list[events.FileEvent]:
        """Take one worker reply; return the events now ready, in order. Only the first
        answer of each piece counts: a job queued again after a Redis restart may be
        answered twice, and the second is dropped here."""
        if self.count is None and reply.count is not None:
            self.count = reply.count
        if reply.index >= self.next_index and reply.index not in self._buffer:
            self._buffer[reply.index] = self._piece(reply, time.monotonic() if now is None else now)
        return self._release()

    @property
    def done(self) -> bool:
        return self.count is not None and self.next_index >= self.count

    def expire(
        self,
        code: protocol.ErrorCode = protocol.ErrorCode.TIMEOUT,
        message: str = "No result arrived in time for this piece",
    ) -> list[events.FileEvent]:
        """Past the deadline: every piece not yet answered gets a ``timeout`` error (or
        ``code``)."""
        count = self.count if self.count is not None else max(len(self.utterance_ids), self.next_index + 1)
        for index in range(self.next_index, count):
            utterance_id = self.utterance_ids[index] if index < len(self.utterance_ids) else None
            self._buffer.setdefault(
                index, events.PieceFailed(self.client_request_id, index, utterance_id, str(code), message)
            )
        self.count = count
        return self._release()

    def _release(self) -> list[events.FileEvent]:
        out: list[events.FileEvent] = []
        while self.next_index in self._buffer:
            out.append(self._buffer.pop(self.next_index))
            self.next_index += 1
        return out + self._finish_if_done()

    def _finish_if_done(self) -> list[events.FileEvent]:
        return [events.FileDone(self.client_request_id)] if self.done else []

    def _piece(self, reply: WorkerReply, now: float) -> events.PieceDone | events.PieceFailed:
        if reply.is_error:
            utterance_id = reply.message.get("utterance_id")
            return events.PieceFailed(
                self.client_request_id,
                reply.index,
                str(utterance_id) if utterance_id is not None else None,
                reply.code,
                reply.text,
            )
        message: dict[str, Any] = dict(reply.message)
        message["latency_ms"] = round((now - self.received_at) * 1000)
        return events.PieceDone(self.client_request_id, reply.index, message, reply.speakers)

    def _no_speech_transcript(self) -> dict[str, Any]:
        """The one final of a file in which the speech detector found no speech."""
        return protocol.transcript(
            "",
            final=True,
            utterance_id=self.internal_id,
            language=None,
            source=self.source,
            start=0.0,
            end=self.duration_s,
            no_speech=True,
            latency_ms=round((time.monotonic() - self.received_at) * 1000),
        )
