"""Bookkeeping for one uploaded file: its pieces come back from different workers in any
order, and the client gets them in file order, then one "Processing complete"."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from shared import protocol
from shared.jobs import client_view


@dataclass
class PendingRequest:
    internal_id: str
    client_request_id: str | None
    deadline: float
    received_at: float = field(default_factory=time.monotonic)
    count: int | None = None
    duration_s: float = 0.0
    utterance_ids: list[str] = field(default_factory=list)
    next_index: int = 0
    _buffer: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one worker reply; return the client messages now ready, in order."""
        if self.count is None and isinstance(reply.get("count"), int):
            self.count = reply["count"]
        index = reply.get("index")
        if isinstance(index, int) and index >= self.next_index:
            self._buffer[index] = reply
        ready = []
        while self.next_index in self._buffer:
            ready.append(self._client_message(self._buffer.pop(self.next_index)))
            self.next_index += 1
        return ready

    @property
    def done(self) -> bool:
        return self.count is not None and self.next_index >= self.count

    def expire(
        self,
        code: protocol.ErrorCode = protocol.ErrorCode.TIMEOUT,
        message: str = "No result arrived in time for this piece",
    ) -> list[dict[str, Any]]:
        """Past the deadline: every piece not yet answered gets a ``timeout`` error (or
        ``code``: e.g. ``redis_unavailable`` when its reply may have been lost)."""
        count = self.count if self.count is not None else max(len(self.utterance_ids), self.next_index + 1)
        out = []
        for index in range(self.next_index, count):
            utterance_id = self.utterance_ids[index] if index < len(self.utterance_ids) else None
            self._buffer.setdefault(
                index,
                protocol.error(code, message, utterance_id=utterance_id),
            )
        self.count = count
        out.extend(self.add({}))
        return out

    def _client_message(self, reply: dict[str, Any]) -> dict[str, Any]:
        message = client_view(reply)
        if self.client_request_id is not None:
            message["request_id"] = self.client_request_id
        if message.get("type") == "transcript":
            message["latency_ms"] = round((time.monotonic() - self.received_at) * 1000)
        return message

    def no_speech_transcript(self, source: str) -> dict[str, Any]:
        """The one final of a file in which the speech detector found no speech."""
        message = protocol.transcript(
            "",
            final=True,
            utterance_id=self.internal_id,
            language=None,
            source=source,
            start=0.0,
            end=self.duration_s,
            no_speech=True,
            latency_ms=round((time.monotonic() - self.received_at) * 1000),
        )
        if self.client_request_id is not None:
            message["request_id"] = self.client_request_id
        return message

    def completion(self) -> dict[str, Any]:
        return protocol.status("Processing complete", processing=False, request_id=self.client_request_id)
