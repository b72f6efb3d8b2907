"""The browser WebSocket protocol (see ARCHITECTURE.md): client commands, server messages,
error codes.

Client messages are validated here and nowhere else; server messages are built here so
that every field name is spelled once. Unknown extra fields from clients are ignored
(the original appliance's client sends ``device_id``, ``mode`` and others).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.errors import ErrorCode as ErrorCode  # re-exported; its home and its table are there


class ProtocolError(Exception):
    """A client mistake that is answered with an ``error`` message; the connection stays open."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after_s = retry_after_s  # ``busy``: when asking again may succeed


Language = Annotated[str | None, Field(default=None, max_length=16)]
Task = Literal["transcribe", "translate"]


class _Command(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=64)


class StartRecording(_Command):
    model_config = ConfigDict(extra="ignore", str_max_length=None)  # reference clips are long

    command: Literal["start_real_recording"]
    language: Language = None
    format: str = Field(default="webm", max_length=64)
    device_id: str | None = Field(default=None, max_length=512)
    mode: str | None = Field(default=None, max_length=64)
    task: Task = "transcribe"
    model: str | None = Field(default=None, max_length=256)
    #: Speaker labels: each final carries ``speaker``, the same for the same voice all session.
    diarize: bool = False
    #: Known speakers (with ``diarize``): a voice that matches one's clip (a data URL of
    #: audio) is labelled by its name; checked by ``gateway.known_speakers``.
    known_speaker_names: list[str] = Field(default_factory=list, max_length=16)
    known_speaker_references: list[str] = Field(default_factory=list, max_length=16)


class ProcessAudio(_Command):
    model_config = ConfigDict(extra="ignore", str_max_length=None)

    command: Literal["process_audio"]
    audio_data: str
    language: Language = None
    format: str | None = Field(default=None, max_length=32)
    task: Task = "transcribe"
    model: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=128)
    #: Speaker labels (issue 17): the file's finals come together once all its pieces are
    #: in, each with ``speaker`` and its segments labelled; the hints bound the count.
    diarize: bool = False
    min_speakers: int | None = Field(default=None, ge=1, le=32)
    max_speakers: int | None = Field(default=None, ge=1, le=32)


class LoadModel(_Command):
    command: Literal["load_model"]
    model_name: str = Field(max_length=256)


class StopRecording(_Command):
    command: Literal["stop_recording"]


class Resume(_Command):
    """Continue a recording whose connection dropped (README, "Resuming a recording")."""

    command: Literal["resume"]
    session_id: str = Field(max_length=64)
    resume_token: str = Field(max_length=128)
    finals_received: int = Field(default=0, ge=0)


class GetStatus(_Command):
    command: Literal["get_status"]


class Ping(_Command):
    command: Literal["ping"]


ClientMessage = Annotated[
    StartRecording | ProcessAudio | LoadModel | StopRecording | GetStatus | Ping | Resume,
    Field(discriminator="command"),
]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
COMMANDS = (
    "start_real_recording",
    "process_audio",
    "load_model",
    "stop_recording",
    "get_status",
    "ping",
    "resume",
)


def loads_untrusted(text: str | bytes) -> Any:
    """``json.loads`` for what a client sent, failing only with ValueError: besides bad
    syntax, json raises ValueError for a number too long for ``int`` and RecursionError
    for nesting deeper than the parser's stack, and either must not end the connection."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_client_message(text: str) -> ClientMessage:
    """Validate one text frame; raise ProtocolError with the code a client can act on."""
    try:
        raw = loads_untrusted(text)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_JSON, "Message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "Message must be a JSON object with a 'command'")
    request_id = raw.get("request_id") if isinstance(raw.get("request_id"), str) else None
    command = raw.get("command")
    if command is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "Message has no 'command'", request_id=request_id)
    if command not in COMMANDS:
        shown = str(command)[:40]
        raise ProtocolError(
            ErrorCode.UNKNOWN_COMMAND,
            f"Unknown command '{shown}'; expected one of: {', '.join(COMMANDS)}",
            request_id=request_id,
        )
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        raise _validation_error(exc, request_id) from None


def _validation_error(exc: ValidationError, request_id: str | None) -> ProtocolError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"][1:]) or "message"
    if first["type"] == "missing":
        return ProtocolError(ErrorCode.MISSING_FIELD, f"Field '{field}' is required", request_id=request_id)
    return ProtocolError(
        ErrorCode.INVALID_FIELD, f"Field '{field}' is invalid: {first['msg']}", request_id=request_id
    )


def decode_base64_audio(data: str, max_bytes: int) -> bytes:
    """Decode ``audio_data``; refuse oversize input before decoding it whole."""
    if len(data) * 3 // 4 > max_bytes + 3:
        raise ProtocolError(ErrorCode.AUDIO_TOO_LARGE, too_large_message(len(data) * 3 // 4, max_bytes))
    if "," in data[:100] and data.startswith("data:"):  # a data: URL from FileReader.readAsDataURL
        data = data.split(",", 1)[1]
    try:
        audio = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.INVALID_BASE64, "'audio_data' is not valid base64") from None
    check_audio_size(audio, max_bytes)
    return audio


def check_audio_size(audio: bytes, max_bytes: int) -> None:
    if not audio:
        raise ProtocolError(ErrorCode.EMPTY_AUDIO, "The audio is empty")
    if len(audio) > max_bytes:
        raise ProtocolError(ErrorCode.AUDIO_TOO_LARGE, too_large_message(len(audio), max_bytes))


def too_large_message(size: int, limit: int) -> str:
    return f"Audio is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB"


def normalize_language(language: str | None) -> str | None:
    """``"auto"``, empty and absent all mean: detect."""
    if language is None:
        return None
    language = language.strip().lower()
    return None if language in ("", "auto") else language


# --- server messages -------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _drop_none(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if v is not None}


def error(
    code: ErrorCode | str,
    message: str,
    *,
    utterance_id: str | None = None,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "error",
        "code": str(code),
        "message": message,
        "utterance_id": utterance_id,
    }
    if request_id is not None:
        msg["request_id"] = request_id
    if retry_after_s is not None:
        msg["retry_after_s"] = retry_after_s
    return msg


def status(message: str, **fields: Any) -> dict[str, Any]:
    return _drop_none({"type": "status", "message": message, **fields})


def pong() -> dict[str, Any]:
    return {"type": "pong"}


def model_loaded(model: str, load_time: float, **fields: Any) -> dict[str, Any]:
    return _drop_none(
        {
            "type": "model_loaded",
            "message": f"Whisper {model} model loaded successfully",
            "model": model,
            "load_time": round(load_time, 3),
            **fields,
        }
    )


def transcript(
    text: str,
    *,
    final: bool,
    utterance_id: str,
    language: str | None,
    source: str,
    start: float,
    end: float,
    **fields: Any,
) -> dict[str, Any]:
    return _drop_none(
        {
            "type": "transcript",
            "transcript": text,
            "final": final,
            "utterance_id": utterance_id,
            "language": language,
            "source": source,
            "start": round(start, 3),
            "end": round(end, 3),
            "timestamp": utc_now(),
            **fields,
        }
    )
