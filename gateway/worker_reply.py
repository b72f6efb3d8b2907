"""A worker's reply off the reply channel, typed: the routing fields the gateway acts on
apart from the message a client may see.

Workers publish a protocol message (``transcript`` or ``error``) with the routing fields
of :meth:`shared.jobs.TranscriptionJob.routing` merged in; this is the one place that
reads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.jobs import client_view
from shared.speakers.wire import REPLY_FIELD


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class WorkerReply:
    request_id: str | None  # a file's internal id, or a live stream's id
    index: int  # piece of a file, or utterance of a stream
    count: int | None  # a file's piece count (0 for live jobs)
    kind: str  # the job kind: final, partial or candidate
    seq: int  # order among a stream's jobs
    enqueued_at: float | None
    message: dict[str, Any]  # what a client may see
    #: A diarized piece's speaker windows (:mod:`shared.speakers.wire`), for the file's
    #: assembler only; None when the job was not diarized.
    speakers: Any = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> WorkerReply:
        request_id = raw.get("request_id")
        enqueued_at = raw.get("enqueued_at")
        count = raw.get("count")
        return cls(
            request_id=str(request_id) if request_id is not None else None,
            index=_int(raw.get("index"), 0),
            count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            kind=str(raw.get("kind") or "final"),
            seq=_int(raw.get("seq"), 0),
            enqueued_at=float(enqueued_at) if isinstance(enqueued_at, int | float) else None,
            message=client_view(raw),
            speakers=raw.get(REPLY_FIELD),
        )

    @property
    def is_error(self) -> bool:
        return self.message.get("type") == "error"

    @property
    def code(self) -> str:
        return str(self.message.get("code") or "")

    @property
    def text(self) -> str:
        return str(self.message.get("message") or "")

    def with_latency(self, now: float | None = None) -> dict[str, Any]:
        """The client message with ``latency_ms`` since the job was queued (wall clock:
        the job was stamped in another process)."""
        message = dict(self.message)
        if self.enqueued_at is not None:
            now = time.time() if now is None else now
            message["latency_ms"] = max(0, round((now - self.enqueued_at) * 1000))
        return message
