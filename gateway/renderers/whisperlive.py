"""WhisperLive's server messages as a renderer of :mod:`gateway.events`.

WhisperLive's client keeps a transcript of *completed* segments and shows the last,
incomplete one beneath it; each server message carries the last ``send_last_n_segments``
completed segments plus the one in progress. Here:

- partial text → the completed segments + ``{"completed": false}`` for the open utterance
- final text → its text as the open segment, then one more completed segment (times as
  WhisperLive writes them: strings with three decimals); the client adds it when it
  starts at or after the last one's end
- the first final with a detected language, when the client named none →
  ``{"language", "language_prob"}`` (WhisperLive's detection message)
- an utterance failed, Redis away → ``status: WARNING`` (the stream goes on)
- the stream failed, a refused message → ``status: ERROR`` (the client stops)
- every final out after ``END_OF_AUDIO`` → ``message: DISCONNECT``

Every message carries the client's ``uid``: the client drops any without it. A segments
message never carries a ``language`` key, which the client would read as detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway import events

SERVER_READY = "SERVER_READY"
DISCONNECT = "DISCONNECT"
#: What the client needs to treat completed segments as its transcript.
BACKEND = "faster_whisper"


def segment(start: float, end: float, text: str, *, completed: bool) -> dict[str, Any]:
    return {"start": f"{start:.3f}", "end": f"{max(end, start):.3f}", "text": text, "completed": completed}


@dataclass
class WhisperLiveRenderer:
    uid: str = ""
    send_last_n: int = 10
    report_language: bool = False  # the client asked for detection (language None)
    completed: list[dict[str, Any]] = field(default_factory=list)

    def ready(self) -> dict[str, Any]:
        return {"uid": self.uid, "message": SERVER_READY, "backend": BACKEND}

    def status(self, status: str, message: Any) -> dict[str, Any]:
        """``WAIT`` (message: minutes to wait), ``ERROR`` or ``WARNING`` (a sentence)."""
        return {"uid": self.uid, "status": status, "message": message}

    def render(self, event: events.Event) -> list[dict[str, Any]]:
        match event:
            case events.PartialText():
                if not event.text:
                    return []
                start, end = self._span(event.message)
                return [self._segments(segment(start, end, event.text, completed=False))]
            case events.FinalText():
                return self._final(event)
            case events.UtteranceFailed():
                return [self.status("WARNING", f"{event.code}: {event.message}")]
            case events.RedisState(connected=False):
                return [self.status("WARNING", "redis_unavailable: results may be late")]
            case events.RecordingFailed() | events.RequestError():
                return [self.status("ERROR", f"{event.code}: {event.message}")]
            case events.RecordingStopped():
                return [{"uid": self.uid, "message": DISCONNECT}]
        return []

    def _final(self, event: events.FinalText) -> list[dict[str, Any]]:
        out = []
        language = event.message.get("language")
        if self.report_language and language:
            self.report_language = False
            probability = event.message.get("language_probability")
            out.append({"uid": self.uid, "language": language, "language_prob": probability})
        if event.text:
            start, end = self._span(event.message)
            # First the settled text as the open segment, as WhisperLive's server repeats
            # a segment until it completes: the client keeps the last open segment and
            # adds it to its transcript at the end unless it equals the last completed one.
            out.append(self._segments(segment(start, end, event.text, completed=False)))
            self.completed.append(segment(start, end, event.text, completed=True))
            out.append(self._segments(None))
        return out

    def _span(self, message: dict[str, Any]) -> tuple[float, float]:
        """The utterance's times, never before the last completed segment's end (the client
        drops a completed segment that starts earlier)."""
        floor = float(self.completed[-1]["end"]) if self.completed else 0.0
        start = max(float(message.get("start") or 0.0), floor)
        return start, max(float(message.get("end") or start), start)

    def _segments(self, last: dict[str, Any] | None) -> dict[str, Any]:
        segments = self.completed[-self.send_last_n :] if self.send_last_n > 0 else []
        return {"uid": self.uid, "segments": [*segments, *([last] if last else [])]}
