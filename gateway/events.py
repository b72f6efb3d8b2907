"""What happens to a connection's audio, as typed events: the one vocabulary every client
protocol is rendered from.

The live path (:mod:`gateway.recording` driving :mod:`gateway.utterances`), the file path
(:mod:`gateway.files`) and the connection itself (:mod:`gateway.connection`) emit these;
each protocol (``/ws`` in :mod:`gateway.renderers.browser`, ``/v1/realtime`` in
:mod:`gateway.renderers.realtime`, the HTTP API in :mod:`gateway.openai_api`) turns them
into its own messages. Nothing downstream reads display text or parses ids: what a
renderer needs is a field here.

``message`` on the transcript events is the worker's reply as ``/ws`` shows it (the
:func:`shared.protocol.transcript` shape, routing fields removed): the browser protocol's
native shape, which the other renderers read typed fields from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.protocol import ErrorCode

# --- a live recording ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingStarted:
    """``session_id`` and ``resume_token`` let a client whose connection drops resume the
    recording within ``resume_window_s`` (:mod:`gateway.live_sessions`)."""

    stream_id: str
    model: str
    session_id: str | None = None
    resume_token: str | None = None
    resume_window_s: float | None = None


@dataclass(frozen=True)
class RecordingResumed:
    """A new connection took the recording over; the finals it missed follow.
    ``audio_offset``: bytes of the client's encoded stream received so far: the client
    sends on from there, so no byte is decoded twice or left out."""

    session_id: str
    model: str
    audio_offset: int
    replayed: int


@dataclass(frozen=True)
class SpeechStarted:
    """``audio_ms``: on the stream's own timeline, pre-roll included."""

    index: int
    audio_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """``kept`` False: too short to be speech (or cleared): no final follows."""

    index: int
    audio_ms: int
    kept: bool = True


@dataclass(frozen=True)
class UtteranceCleared:
    index: int


@dataclass(frozen=True)
class CommitEmpty:
    """A manual commit found no speech since the last one."""


@dataclass(frozen=True)
class UtteranceQueued:
    """The utterance is over and its final is on its way (the audio is committed)."""

    index: int
    utterance_id: str
    start: float
    end: float


@dataclass(frozen=True)
class PartialText:
    """Text while the utterance goes on; ``whole``: it covers the utterance up to a pause
    (a candidate final), so no word at its end is cut off."""

    index: int
    utterance_id: str
    message: dict[str, Any]
    whole: bool = False

    @property
    def text(self) -> str:
        return str(self.message.get("transcript") or "").strip()

    @property
    def seconds(self) -> float:
        """The span the partial's words cover (its segments' start to end, on the stream's
        timeline): what :mod:`gateway.realtime.deltas` places its words in."""
        return max(0.0, float(self.message.get("end") or 0.0) - float(self.message.get("start") or 0.0))


@dataclass(frozen=True)
class FinalText:
    """Settled text, released in stream order. ``waited_s``: from the audio service
    closing the utterance to this release (None when that notice never came)."""

    index: int
    utterance_id: str
    message: dict[str, Any]
    waited_s: float | None = None

    @property
    def text(self) -> str:
        return str(self.message.get("transcript") or "").strip()

    @property
    def seconds(self) -> float:
        return max(0.0, float(self.message.get("end") or 0.0) - float(self.message.get("start") or 0.0))


@dataclass(frozen=True)
class UtteranceFailed:
    """The utterance's one answer is this error instead of a final. ``waited_s`` as for
    :class:`FinalText`."""

    index: int
    utterance_id: str
    code: str
    message: str
    waited_s: float | None = None


@dataclass(frozen=True)
class PartialsPaused:
    """The pool is loaded: the recording gets no partials for now; its finals go on."""


@dataclass(frozen=True)
class PartialsResumed:
    """Partials come again (at first thinned, then at the usual cadence)."""


@dataclass(frozen=True)
class RecordingFailed:
    """The stream itself failed (undecodable audio, the audio service lost)."""

    code: str
    message: str


@dataclass(frozen=True)
class RecordingStopped:
    """Every queued final is out: a client may close."""

    model: str
    finals: int


# --- an uploaded file ------------------------------------------------------------------


@dataclass(frozen=True)
class FileReceived:
    request_id: str | None  # the client's id, echoed


@dataclass(frozen=True)
class FileQueued:
    """Decoded and queued: how many pieces to expect, so clients can show progress."""

    request_id: str | None
    pieces: int
    duration_s: float


@dataclass(frozen=True)
class PieceDone:
    """One piece's final transcript, released in file order. ``speakers``: its speaker
    windows when the file is diarized (the assembler's input, never shown to a client)."""

    request_id: str | None
    index: int
    message: dict[str, Any]
    speakers: Any = None


@dataclass(frozen=True)
class PieceFailed:
    request_id: str | None
    index: int
    utterance_id: str | None
    code: str
    message: str


@dataclass(frozen=True)
class FileDone:
    request_id: str | None


@dataclass(frozen=True)
class FileRefused:
    """The file was not taken (undecodable, too long, queue full, audio service away)."""

    request_id: str | None
    code: str
    message: str


# --- the connection --------------------------------------------------------------------


@dataclass(frozen=True)
class RequestError:
    """A client message that was refused; the connection stays open."""

    code: str
    message: str
    request_id: str | None = None
    param: str | None = None
    event_id: str | None = None
    retry_after_s: float | None = None  # ``busy``: when asking again may succeed

    @classmethod
    def of(cls, code: ErrorCode | str, message: str, **fields: Any) -> RequestError:
        return cls(str(code), message, **fields)


@dataclass(frozen=True)
class RedisState:
    """The pub/sub connection was lost (``connected`` False) or is back."""

    connected: bool


LiveEvent = (
    RecordingStarted
    | RecordingResumed
    | SpeechStarted
    | SpeechStopped
    | UtteranceCleared
    | CommitEmpty
    | UtteranceQueued
    | PartialText
    | FinalText
    | UtteranceFailed
    | PartialsPaused
    | PartialsResumed
    | RecordingFailed
    | RecordingStopped
)
FileEvent = FileReceived | FileQueued | PieceDone | PieceFailed | FileDone | FileRefused
Event = LiveEvent | FileEvent | RequestError | RedisState
