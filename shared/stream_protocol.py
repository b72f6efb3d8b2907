"""The gateway ↔ audio-service live stream protocol (WebSocket ``/stream``), as typed messages.

Both sides build and parse these models and nothing else, so a field is spelled once
and the two services never import each other's package to agree on a shape.

Gateway → audio service: first a :class:`StreamConfig` text frame; then binary frames,
the next bytes of one encoded stream; mid-stream :class:`Commit` (end the open utterance
now), :class:`Clear` (drop it unsent) and :class:`Configure` (new settings for what
follows), applied at their place in the audio; finally :class:`Stop`.

Audio service → gateway: :class:`Started`; :class:`FinalQueued` for each finished
utterance (``seq`` names the job whose result is its final: a confirmed candidate's or a
final job's); :class:`Stopped` once flushed; :class:`StreamError` when the audio cannot
be decoded or the stream is refused. With ``speech_events``: :class:`SpeechStarted`,
:class:`SpeechStopped` (stream time in ms), :class:`Cleared` (results of that utterance
up to ``seq`` are void) and :class:`CommitEmpty` (a commit found no speech). Under load:
:class:`PartialsPaused` and :class:`PartialsResumed` (:mod:`audio_service.pacer`).

The gateway closing the connection without ``stop`` means the client has gone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from shared.speakers import references


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json()


class VadSettings(_Message):
    """A client's turn detection. ``pause_s`` None: utterances end only on :class:`Commit`;
    a field left out keeps the service's default, so only the fields set travel."""

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    threshold: float | None = None
    pause_s: float | None = None
    preroll_s: float | None = None


# --- gateway → audio service ------------------------------------------------------------


class StreamConfig(_Message):
    stream_id: str = Field(max_length=128)
    reply_channel: str = Field(max_length=256)
    language: str | None = None
    task: str = "transcribe"
    model: str | None = None
    format: str | None = None
    prompt: str | None = None
    vad: VadSettings | None = None
    speech_events: bool = False
    #: Speaker labels: finals' jobs ask the worker for the utterance's voice windows.
    diarize: bool = False
    #: Known speakers' reference clips (base64 of the client's encoded audio, names kept by
    #: the gateway): decoded and checked by the audio service before ``started``, embedded
    #: by the worker of the stream's first final, which returns them with its reply.
    speaker_references: list[str] = Field(default_factory=list, max_length=references.MAX_KNOWN)


class Stop(_Message):
    type: Literal["stop"] = "stop"


class Commit(_Message):
    type: Literal["commit"] = "commit"


class Clear(_Message):
    type: Literal["clear"] = "clear"


class Configure(_Message):
    """Only the fields set are changed (``model_fields_set``)."""

    type: Literal["configure"] = "configure"
    language: str | None = None
    model: str | None = None
    prompt: str | None = None
    format: str | None = None
    vad: VadSettings | None = None

    def changes(self) -> set[str]:
        return set(self.model_fields_set) - {"type"}

    def to_json(self) -> str:
        """Only the fields set travel, so that absent means "unchanged"."""
        return self.model_dump_json(include=self.changes() | {"type"})


Control = Annotated[Stop | Commit | Clear | Configure, Field(discriminator="type")]


# --- audio service → gateway ------------------------------------------------------------


class Started(_Message):
    type: Literal["started"] = "started"


class FinalQueued(_Message):
    type: Literal["final_queued"] = "final_queued"
    utterance_id: str
    index: int
    seq: int
    start: float
    end: float


class Stopped(_Message):
    type: Literal["stopped"] = "stopped"
    finals: int


class StreamError(_Message):
    type: Literal["error"] = "error"
    code: str
    message: str = ""


class SpeechStarted(_Message):
    type: Literal["speech_started"] = "speech_started"
    index: int
    audio_ms: int
    kept: bool = True


class SpeechStopped(_Message):
    type: Literal["speech_stopped"] = "speech_stopped"
    index: int
    audio_ms: int
    kept: bool = True


class Cleared(_Message):
    type: Literal["cleared"] = "cleared"
    index: int
    seq: int


class CommitEmpty(_Message):
    type: Literal["commit_empty"] = "commit_empty"


class PartialsPaused(_Message):
    """The pool is loaded: no partials for now (finals go on)."""

    type: Literal["partials_paused"] = "partials_paused"


class PartialsResumed(_Message):
    type: Literal["partials_resumed"] = "partials_resumed"


StreamEvent = Annotated[
    Started
    | FinalQueued
    | Stopped
    | StreamError
    | SpeechStarted
    | SpeechStopped
    | Cleared
    | CommitEmpty
    | PartialsPaused
    | PartialsResumed,
    Field(discriminator="type"),
]

_config_adapter: TypeAdapter[StreamConfig] = TypeAdapter(StreamConfig)
_control_adapter: TypeAdapter[Control] = TypeAdapter(Control)
_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


class StreamProtocolError(ValueError):
    """A frame that is not a message of this protocol."""


def _validate(adapter: TypeAdapter[Any], text: str | bytes) -> Any:
    try:
        return adapter.validate_json(text)
    except (ValidationError, ValueError, RecursionError) as exc:
        raise StreamProtocolError(str(exc)[:200]) from None


def parse_config(text: str | bytes) -> StreamConfig:
    return _validate(_config_adapter, text)  # type: ignore[no-any-return]


def parse_control(text: str | bytes) -> Stop | Commit | Clear | Configure:
    return _validate(_control_adapter, text)  # type: ignore[no-any-return]


def parse_event(text: str | bytes) -> StreamEvent:
    return _validate(_event_adapter, text)  # type: ignore[no-any-return]
