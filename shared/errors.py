"""The service's error codes and what each one means on every face: HTTP status, WebSocket
close code, default message and the OpenAI form field it concerns.

One table, so the gateway's HTTP routes, its OpenAI API, its WebSockets and the audio
service cannot drift apart again. Two tables used to disagree on ``unknown_model``
(the OpenAI errors said 400, ``/api/load-model`` said 404). Both answers stay, because
the tests assert each one, but they are now one meaning, written down here:
``unknown_model`` means "no model has that name". When the model is a *parameter* of the
request (a transcription that asks for ``model=gpt-9``), that is a bad field: 400 with
``param: "model"``, which OpenAI's SDK raises as ``BadRequestError``, as OpenAI does.
When the model is the *target* of the request (``POST /api/load-model`` acts on the model
it names), the thing asked for does not exist: 404. :attr:`ErrorSpec.target_status`
holds that second status; every other code answers the same either way.

Other choices: codes the old OpenAI table did not list got 500 there and 400 on the
realtime API; each now has its own status (client mistakes 4xx, ours 5xx), so
``internal_error`` is a ``server_error`` on both. ``invalid_audio`` is 415 on the audio
service's internal hop too (it said 422), so a status means one thing everywhere.

``close_code`` is the code a WebSocket is closed with when this error ends one (a refused
handshake, a refused stream, a flooding client); ``None``: the error is only reported and
the connection stays open. Whether an error closes is the endpoint's call: ``busy``
closes a new audio-service stream but not ``/ws`` (it only refuses one more file).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """Stable error codes; clients switch on these, so never rename one."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_COMMAND = "unknown_command"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    INVALID_BASE64 = "invalid_base64"
    EMPTY_AUDIO = "empty_audio"
    INVALID_AUDIO = "invalid_audio"
    AUDIO_TOO_LARGE = "audio_too_large"
    AUDIO_TOO_LONG = "audio_too_long"
    UNKNOWN_MODEL = "unknown_model"
    MODEL_UNAVAILABLE = "model_unavailable"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    UNSUPPORTED_TASK = "unsupported_task"
    ALREADY_RECORDING = "already_recording"
    NO_WORKERS = "no_workers"
    BUSY = "busy"
    TOO_MANY_CLIENTS = "too_many_clients"
    TIMEOUT = "timeout"
    TRANSCRIPTION_FAILED = "transcription_failed"
    AUDIO_SERVICE_UNAVAILABLE = "audio_service_unavailable"
    INTERNAL_ERROR = "internal_error"
    WORKER_LOST = "worker_lost"
    RATE_LIMITED = "rate_limited"
    REDIS_UNAVAILABLE = "redis_unavailable"
    INVALID_API_KEY = "invalid_api_key"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    RESUME_EXPIRED = "resume_expired"
    RESUME_INVALID = "resume_invalid"
    STREAM_LAGGING = "stream_lagging"
    INVALID_SPEAKER_REFERENCE = "invalid_speaker_reference"


class CloseCode(IntEnum):
    """The WebSocket close codes the services use (RFC 6455, section 7.4.1)."""

    POLICY_VIOLATION = 1008
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class ErrorSpec:
    #: The HTTP status when the code answers an HTTP request (or would, for WebSocket-only codes).
    status: int
    #: The close code when this error ends a WebSocket; None: it never does.
    close_code: CloseCode | None
    #: What to tell a person when the raiser has nothing more specific to say.
    message: str
    #: The OpenAI form field the error concerns (``error.param``); None: the request as a whole.
    param: str | None = None
    #: The status when the thing the code names is what the request acts on (see the module
    #: docstring); None: the same as ``status``.
    target_status: int | None = None


_POLICY = CloseCode.POLICY_VIOLATION
_LATER = CloseCode.TRY_AGAIN_LATER

_TABLE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_JSON: ErrorSpec(400, None, "The message is not valid JSON"),
    # Closes only the audio service's stream, whose first message must configure it.
    ErrorCode.INVALID_MESSAGE: ErrorSpec(400, _POLICY, "The message is malformed"),
    ErrorCode.UNKNOWN_COMMAND: ErrorSpec(400, None, "Unknown command"),
    ErrorCode.MISSING_FIELD: ErrorSpec(400, None, "A required field is missing"),
    ErrorCode.INVALID_FIELD: ErrorSpec(400, None, "A field has an invalid value"),
    ErrorCode.INVALID_BASE64: ErrorSpec(400, None, "The audio is not valid base64"),
    ErrorCode.EMPTY_AUDIO: ErrorSpec(400, None, "The audio is empty", "file"),
    ErrorCode.INVALID_AUDIO: ErrorSpec(415, None, "The audio could not be decoded", "file"),
    ErrorCode.AUDIO_TOO_LARGE: ErrorSpec(413, None, "The audio is over the size limit", "file"),
    ErrorCode.AUDIO_TOO_LONG: ErrorSpec(413, None, "The audio is over the length limit", "file"),
    ErrorCode.UNKNOWN_MODEL: ErrorSpec(400, None, "No model has that name", "model", target_status=404),
    ErrorCode.MODEL_UNAVAILABLE: ErrorSpec(503, None, "The model could not be loaded", "model"),
    ErrorCode.UNSUPPORTED_LANGUAGE: ErrorSpec(400, None, "The model does not know that language", "language"),
    ErrorCode.UNSUPPORTED_TASK: ErrorSpec(400, None, "The model cannot do that task", "model"),
    ErrorCode.ALREADY_RECORDING: ErrorSpec(409, None, "A recording is already running; stop it first"),
    ErrorCode.NO_WORKERS: ErrorSpec(503, None, "No transcription worker is running"),
    # Closes only a new audio-service stream; /ws refuses the one file and stays open.
    ErrorCode.BUSY: ErrorSpec(429, _LATER, "The service is busy; try again shortly"),
    ErrorCode.TOO_MANY_CLIENTS: ErrorSpec(429, _LATER, "The server is at its connection limit"),
    ErrorCode.TIMEOUT: ErrorSpec(504, None, "The transcription took too long"),
    ErrorCode.TRANSCRIPTION_FAILED: ErrorSpec(500, None, "The transcription failed"),
    ErrorCode.AUDIO_SERVICE_UNAVAILABLE: ErrorSpec(503, None, "The audio service is not reachable"),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(500, None, "Internal error"),
    ErrorCode.WORKER_LOST: ErrorSpec(500, None, "The worker stopped mid-job and no retry was possible"),
    # Refused first; the connection is closed only after the grace refusals (flooding).
    ErrorCode.RATE_LIMITED: ErrorSpec(429, _POLICY, "Too many messages; slow down"),
    ErrorCode.REDIS_UNAVAILABLE: ErrorSpec(503, None, "Redis restarted mid-request; send it again"),
    ErrorCode.INVALID_API_KEY: ErrorSpec(401, _POLICY, "Invalid or missing API key"),
    # Refused before the handshake completes, which the client sees as HTTP 403.
    ErrorCode.ORIGIN_NOT_ALLOWED: ErrorSpec(403, _POLICY, "Connections from this origin are not allowed"),
    # A resume after the window (or to a session this gateway does not hold): start again.
    ErrorCode.RESUME_EXPIRED: ErrorSpec(410, None, "The live session can no longer be resumed"),
    ErrorCode.RESUME_INVALID: ErrorSpec(403, None, "The resume token does not match the session"),
    # The lag watchdog ended a live stream whose results fell too far behind its audio.
    ErrorCode.STREAM_LAGGING: ErrorSpec(503, None, "The stream fell too far behind; start again shortly"),
    # A known speaker's reference clip is not audio, or too short or long to name a voice.
    ErrorCode.INVALID_SPEAKER_REFERENCE: ErrorSpec(
        400, None, "A known speaker's reference clip is not usable", "known_speaker_references"
    ),
}


def spec(code: ErrorCode) -> ErrorSpec:
    """Every code has a spec (a unit test checks), so this never fails for an ``ErrorCode``."""
    return _TABLE[code]


def parse_code(text: str | None, default: ErrorCode = ErrorCode.INTERNAL_ERROR) -> ErrorCode:
    """A code received from another service or a peer; ``default`` for anything this
    version does not know, so a newer peer's code cannot crash an older reader."""
    if text is None:
        return default
    try:
        return ErrorCode(text)
    except ValueError:
        return default


def http_status(code: ErrorCode, *, target: bool = False) -> int:
    """``target``: the request acts on the thing the code names (``/api/load-model``)."""
    entry = _TABLE[code]
    return entry.target_status if target and entry.target_status is not None else entry.status


def close_code(code: ErrorCode) -> CloseCode:
    """For an error that ends a WebSocket; a code that never closes one is a programming error."""
    entry = _TABLE[code]
    if entry.close_code is None:
        raise ValueError(f"{code!r} never closes a WebSocket")
    return entry.close_code
