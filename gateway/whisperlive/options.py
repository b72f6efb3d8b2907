"""WhisperLive's first message: the client's options, validated.

Honoured: ``uid`` (echoed on every message; the client drops messages without it),
``language`` (None: detect), ``task`` (``transcribe`` / ``translate``),
``initial_prompt``, ``send_last_n_segments``, ``audio_format`` (``float32``, the
client's default, or ``int16``). Ignored: ``model`` (the server's model serves, as a
WhisperLive server started with a custom model does), ``use_vad`` (this service always
cuts utterances with its speech detector), ``no_speech_thresh``, ``clip_audio``,
``same_output_threshold``, ``hotwords``, ``vad_parameters``, translation, diarization and
word timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.audio_format import SAMPLE_RATE, raw_format
from shared.errors import ErrorCode
from shared.protocol import ProtocolError, loads_untrusted

#: ``audio_format`` → the stream's raw format (WhisperLive streams 16 kHz mono).
AUDIO_FORMATS = {"float32": raw_format("f32", SAMPLE_RATE), "int16": raw_format("pcm16", SAMPLE_RATE)}
MAX_UID = 128
MAX_PROMPT = 2000


@dataclass(frozen=True)
class ClientOptions:
    uid: str
    language: str | None
    task: str
    format: str
    prompt: str | None
    send_last_n: int


def parse_options(text: str) -> ClientOptions:
    """The options message, or ProtocolError saying what is wrong with it."""
    try:
        message: Any = loads_untrusted(text)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_JSON, "The options message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "The options message must be a JSON object")
    uid = message.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "'uid' must be a non-empty string")
    language = message.get("language")
    if language is not None and not isinstance(language, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'language' must be a language code or null")
    task = message.get("task") or "transcribe"
    if task not in ("transcribe", "translate"):
        raise ProtocolError(ErrorCode.UNSUPPORTED_TASK, "'task' must be 'transcribe' or 'translate'")
    audio_format = message.get("audio_format") or "float32"
    if audio_format not in AUDIO_FORMATS:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'audio_format' must be one of {', '.join(AUDIO_FORMATS)}"
        )
    prompt = message.get("initial_prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'initial_prompt' must be text of at most {MAX_PROMPT} characters"
        )
    last_n = message.get("send_last_n_segments", 10)
    if not isinstance(last_n, int) or isinstance(last_n, bool) or not 0 <= last_n <= 1000:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'send_last_n_segments' must be a count")
    return ClientOptions(
        uid=uid,
        language=None if language in (None, "", "auto") else language,
        task=task,
        format=AUDIO_FORMATS[audio_format],
        prompt=prompt or None,
        send_last_n=last_n,
    )


def uid_of(text: str) -> str:
    """The uid of a message that was refused, so the client can still read the refusal."""
    try:
        message = loads_untrusted(text)
    except ValueError:
        return ""
    uid = message.get("uid") if isinstance(message, dict) else None
    return uid[:MAX_UID] if isinstance(uid, str) else ""
