"""Deepgram's ``/v1/listen`` query parameters, validated into what this service does.

What is honoured: ``encoding``/``sample_rate``/``channels`` (raw PCM or G.711 at any rate,
or a container ffmpeg reads when ``encoding`` is absent), ``language`` (its primary
subtag; ``multi`` detects), ``model`` (Deepgram's own model names mean this server's
default, any other name is one of our models), ``interim_results``, ``punctuate`` and
``smart_format`` (off: lower-case words without punctuation, as Deepgram's raw output),
``endpointing`` (the pause that ends an utterance, at least :data:`MIN_PAUSE_MS`),
``utterance_end_ms`` (an ``UtteranceEnd`` after each final), ``vad_events``
(``SpeechStarted``), and on the pre-recorded API ``utterances`` and ``paragraphs``. Every
other parameter is accepted and ignored, as Deepgram documents for unknown ones; a known
parameter with a bad value is refused with HTTP 400 before any audio is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.deepgram.errors import DeepgramError
from shared.audio_format import MAX_RAW_CHANNELS, MAX_RAW_RATE, MIN_RAW_RATE, raw_format
from shared.errors import ErrorCode

#: ``encoding`` → raw sample type of :func:`shared.audio_format.raw_format`.
RAW_ENCODINGS = {"linear16": "pcm16", "mulaw": "g711_ulaw", "alaw": "g711_alaw"}
#: ``encoding`` → the container ffmpeg is told to read (Deepgram's opus is Ogg Opus).
CONTAINER_ENCODINGS = {"opus": "ogg", "ogg-opus": "ogg", "flac": "flac"}
#: Model names of Deepgram's own, which mean "the server's model" here.
DEEPGRAM_MODEL_PREFIXES = (
    "nova",
    "enhanced",
    "general",
    "phonecall",
    "meeting",
    "voicemail",
    "finance",
    "conversationalai",
    "video",
    "medical",
    "drivethru",
    "automotive",
    "whisper",
)
#: Deepgram's default endpointing is 10 ms, which would cut speech at every breath with
#: this service's speech detector; shorter pauses than this are raised to it.
MIN_PAUSE_MS = 200
MAX_PAUSE_MS = 10_000
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class ListenOptions:
    format: str | None  # the stream ``format`` for the audio service (None: ffmpeg probes)
    language: str | None  # None: detect
    model: str | None  # one of our model names; None: the server's default
    requested_model: str  # what the client named, echoed in metadata
    channels: int = 1
    interim_results: bool = False
    punctuate: bool = False
    smart_format: bool = False
    endpointing_ms: int | None = None  # None: the service's pause
    utterance_end_ms: int | None = None
    vad_events: bool = False
    utterances: bool = False  # pre-recorded only
    paragraphs: bool = False  # pre-recorded only

    @property
    def punctuated(self) -> bool:
        return self.punctuate or self.smart_format


def parse_options(params: Mapping[str, str], *, live: bool) -> ListenOptions:
    """The request's options, or :class:`DeepgramError` (400) naming the bad parameter."""
    encoding = (params.get("encoding") or "").lower() or None
    channels = _int(params, "channels", 1, 1, MAX_RAW_CHANNELS)
    rate = _int(params, "sample_rate", None, MIN_RAW_RATE, MAX_RAW_RATE)
    fmt: str | None = None
    if encoding in RAW_ENCODINGS:
        if rate is None:
            raise DeepgramError(
                ErrorCode.INVALID_FIELD, f"sample_rate is required with encoding={encoding}", status=400
            )
        fmt = raw_format(RAW_ENCODINGS[encoding], rate, channels)
    elif encoding in CONTAINER_ENCODINGS:
        fmt = CONTAINER_ENCODINGS[encoding]
    elif encoding is not None:
        supported = ", ".join([*RAW_ENCODINGS, *CONTAINER_ENCODINGS])
        raise DeepgramError(
            ErrorCode.INVALID_FIELD,
            f"Unsupported encoding {encoding[:40]!r}; this server reads: {supported}",
            400,
        )
    if not live:
        fmt = None  # a file's container says what it is
    model = params.get("model") or ""
    endpointing = params.get("endpointing")
    endpointing_ms: int | None = None
    if endpointing is not None and endpointing.lower() not in FALSE:
        endpointing_ms = min(
            max(_int(params, "endpointing", 0, 0, MAX_PAUSE_MS) or 0, MIN_PAUSE_MS), MAX_PAUSE_MS
        )
    return ListenOptions(
        format=fmt,
        language=_language(params.get("language")),
        model=None if not model or model.lower().startswith(DEEPGRAM_MODEL_PREFIXES) else model,
        requested_model=model or "default",
        channels=channels or 1,
        interim_results=_bool(params, "interim_results"),
        punctuate=_bool(params, "punctuate"),
        smart_format=_bool(params, "smart_format"),
        endpointing_ms=endpointing_ms,
        utterance_end_ms=_int(params, "utterance_end_ms", None, 1, 60_000),
        vad_events=_bool(params, "vad_events"),
        utterances=_bool(params, "utterances"),
        paragraphs=_bool(params, "paragraphs"),
    )


def _language(value: str | None) -> str | None:
    """``en-US`` → ``en``; ``multi`` (Deepgram's code-switching) → detect."""
    if not value or value.lower() == "multi":
        return None
    return value.split("-")[0].lower()


def _bool(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise DeepgramError(ErrorCode.INVALID_FIELD, f"{name} must be true or false, not {value[:40]!r}", 400)


def _int(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise DeepgramError(
            ErrorCode.INVALID_FIELD, f"{name} must be a whole number, not {value[:40]!r}", 400
        ) from None
    if not low <= number <= high:
        raise DeepgramError(ErrorCode.INVALID_FIELD, f"{name} must be between {low} and {high}", 400)
    return number
