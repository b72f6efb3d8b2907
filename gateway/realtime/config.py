"""A realtime transcription session's settings: parsed from ``session.update`` (GA shape,
``session.type == "transcription"``) or the beta ``transcription_session.update``, checked
with the same model/language rules as every other request, and rendered back in the
shape OpenAI's SDK parses (``RealtimeTranscriptionSessionCreateRequest``, or the beta
``TranscriptionSession``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gateway.known_speakers import KnownSpeakerError, parse_known_speakers
from gateway.model_loading import validate_request
from gateway.openai_api import OPENAI_MODEL_NAMES
from gateway.renderers.diarized import DIARIZE_MODEL
from shared.audio_format import G711_ALAW, G711_ULAW, PCM16_24K
from shared.protocol import ProtocolError
from shared.stream_protocol import VadSettings

#: GA ``audio.input.format.type`` and beta ``input_audio_format`` -> the audio service's raw format.
GA_FORMATS = {"audio/pcm": PCM16_24K, "audio/pcmu": G711_ULAW, "audio/pcma": G711_ALAW}
BETA_FORMATS = {"pcm16": PCM16_24K, "g711_ulaw": G711_ULAW, "g711_alaw": G711_ALAW}


class ConfigError(Exception):
    """A session update that cannot be applied; nothing of it is applied."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


@dataclass(frozen=True)
class TurnDetection:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class ModelDefaults:
    """What OpenAI's published session types say a transcription model takes
    (``openai.types.realtime``): ``gpt-realtime-whisper`` serves client-side turns only
    ("turn detection must be set to null; VAD is not supported") and takes no prompt."""

    server_vad: bool = True  # turn detection when the client names none
    vad_allowed: bool = True  # False: a client's server_vad/semantic_vad is refused
    prompt: bool = True  # False: a prompt is not applied (echoed null)


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    "gpt-realtime-whisper": ModelDefaults(server_vad=False, vad_allowed=False, prompt=False),
}
#: Every other name (the other OpenAI names, and our own models): OpenAI's default session.
OTHER_MODELS = ModelDefaults()


def model_defaults(model: str) -> ModelDefaults:
    return MODEL_DEFAULTS.get(model, OTHER_MODELS)


@dataclass(frozen=True)
class TranscriptionConfig:
    model: str  # as the client named it
    language: str | None = None
    prompt: str | None = None
    format: str = PCM16_24K
    turn_detection: TurnDetection | None = TurnDetection()
    #: The client set ``turn_detection`` itself; until it does, the model's default applies.
    explicit_turn_detection: bool = False
    #: Known speakers (our extension: ``known_speaker_names`` / ``known_speaker_references``
    #: in the transcription object, as in OpenAI's file API), checked clips by name.
    known_speakers: tuple[tuple[str, bytes], ...] = ()

    def served_model(self, default_model: str) -> str:
        return default_model if self.model in OPENAI_MODEL_NAMES else self.model

    @property
    def diarize(self) -> bool:
        """Speaker labels on each ``completed`` event: the transcription model is OpenAI's
        diarizing one, whose name already means "label the speakers" in the file API."""
        return self.model == DIARIZE_MODEL

    def vad(self) -> VadSettings:
        """The audio service's speech detection for this session (:mod:`shared.stream_protocol`);
        no turn detection: utterances end only on a commit."""
        td = self.turn_detection
        if td is None:
            return VadSettings(threshold=0.5, pause_s=None, preroll_s=0.3)
        return VadSettings(
            threshold=td.threshold,
            pause_s=td.silence_duration_ms / 1000,
            preroll_s=td.prefix_padding_ms / 1000,
        )

    # --- rendering -----------------------------------------------------------------------

    def ga_session(self) -> dict[str, Any]:
        fmt_type = next(k for k, v in GA_FORMATS.items() if v == self.format)
        td = self.turn_detection
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": fmt_type, **({"rate": 24000} if self.format == PCM16_24K else {})},
                    "transcription": {"model": self.model, "language": self.language, "prompt": self.prompt},
                    "turn_detection": None
                    if td is None
                    else {"type": "server_vad", **dataclasses.asdict(td)},
                    "noise_reduction": None,
                }
            },
            "include": None,
        }

    def beta_session(self) -> dict[str, Any]:
        td = self.turn_detection
        return {
            "input_audio_format": next(k for k, v in BETA_FORMATS.items() if v == self.format),
            "input_audio_transcription": {
                "model": self.model,
                "language": self.language,
                "prompt": self.prompt,
            },
            "turn_detection": None if td is None else {"type": "server_vad", **dataclasses.asdict(td)},
            "modalities": ["text"],
        }


def default_config(query_model: str | None, default_model: str) -> TranscriptionConfig:
    """The session before any update: the URL's ``model`` when it names one of ours
    (realtime URLs usually name a realtime model such as ``gpt-realtime``: ignored)."""
    model = default_model
    if query_model:
        try:
            validate_request(query_model, None, "transcribe")
            model = query_model
        except ProtocolError:
            pass
    return _model_rules(TranscriptionConfig(model=model))


def apply_ga_update(config: TranscriptionConfig, session: Any, default_model: str) -> TranscriptionConfig:
    """``session.update`` with a ``type: "transcription"`` session."""
    if not isinstance(session, dict):
        raise ConfigError("invalid_value", "'session' must be an object", "session")
    if session.get("type") != "transcription":
        raise ConfigError(
            "invalid_value",
            "Only transcription sessions are served here: send session.type 'transcription'",
            "session.type",
        )
    audio_input = _object(_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
    changes: dict[str, Any] = {}
    if audio_input.get("format") is not None:
        changes["format"] = _ga_format(audio_input["format"])
    return _apply(config, changes, audio_input, "session.audio.input", "transcription", default_model)


def apply_beta_update(config: TranscriptionConfig, session: Any, default_model: str) -> TranscriptionConfig:
    """The beta client's ``transcription_session.update``."""
    session = _object(session, "session")
    changes: dict[str, Any] = {}
    if session.get("input_audio_format") is not None:
        fmt = session["input_audio_format"]
        if fmt not in BETA_FORMATS:
            raise ConfigError(
                "invalid_value",
                f"Unsupported input_audio_format {str(fmt)[:40]!r}; "
                f"expected one of: {', '.join(BETA_FORMATS)}",
                "session.input_audio_format",
            )
        changes["format"] = BETA_FORMATS[fmt]
    return _apply(config, changes, session, "session", "input_audio_transcription", default_model)


def _apply(
    config: TranscriptionConfig,
    changes: dict[str, Any],
    fields: dict[str, Any],
    param: str,
    transcription_key: str,
    default_model: str,
) -> TranscriptionConfig:
    """The part both update shapes share: transcription settings and turn detection,
    read from ``fields`` (found at ``param`` in the event), then the checked result."""
    if fields.get(transcription_key) is not None:
        changes.update(_transcription(fields[transcription_key], f"{param}.{transcription_key}", config))
    if "turn_detection" in fields:
        turn_detection = fields["turn_detection"]
        changes["turn_detection"] = _turn_detection(turn_detection, f"{param}.turn_detection", config)
        changes["explicit_turn_detection"] = True
    updated = _model_rules(dataclasses.replace(config, **changes), f"{param}.turn_detection")
    return _checked(updated, default_model)


def _model_rules(
    config: TranscriptionConfig, param: str = "session.audio.input.turn_detection"
) -> TranscriptionConfig:
    """The model's defaults (:data:`MODEL_DEFAULTS`) on what the client left unset, and its
    limits on what it set: what the session then echoes is what is applied."""
    rules = model_defaults(config.model)
    if config.explicit_turn_detection:
        if config.turn_detection is not None and not rules.vad_allowed:
            raise ConfigError(
                "invalid_value",
                f"Turn detection must be null for {config.model}: it serves client-side turns only "
                "(send input_audio_buffer.commit)",
                param,
            )
    else:
        config = dataclasses.replace(config, turn_detection=TurnDetection() if rules.server_vad else None)
    if config.prompt is not None and not rules.prompt:
        config = dataclasses.replace(config, prompt=None)  # not supported by that model: not applied
    return config


# --- pieces ----------------------------------------------------------------------------


def _object(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("invalid_value", f"'{param}' must be an object", param)
    return value


def _ga_format(value: Any) -> str:
    param = "session.audio.input.format"
    fmt = _object(value, param)
    kind = fmt.get("type", "audio/pcm")
    if kind not in GA_FORMATS:
        raise ConfigError(
            "invalid_value",
            f"Unsupported audio format {str(kind)[:40]!r}; expected one of: {', '.join(GA_FORMATS)}",
            param + ".type",
        )
    if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise ConfigError("invalid_value", "audio/pcm is taken at 24000 Hz only", param + ".rate")
    return GA_FORMATS[kind]


def _transcription(value: Any, param: str, config: TranscriptionConfig) -> dict[str, Any]:
    t = _object(value, param)
    changes: dict[str, Any] = {}
    for name in ("model", "language", "prompt"):
        if name in t:
            if t[name] is not None and not isinstance(t[name], str):
                raise ConfigError("invalid_type", f"'{param}.{name}' must be a string", f"{param}.{name}")
            changes[name] = t[name] or (config.model if name == "model" else None)
    if "known_speaker_names" in t or "known_speaker_references" in t:
        changes["known_speakers"] = _known_speakers(t, param)
    return changes


def _known_speakers(t: dict[str, Any], param: str) -> tuple[tuple[str, bytes], ...]:
    names, clips = t.get("known_speaker_names") or [], t.get("known_speaker_references") or []
    if not isinstance(names, list) or not isinstance(clips, list):
        raise ConfigError(
            "invalid_type",
            f"'{param}.known_speaker_names' and '.known_speaker_references' must be arrays",
            f"{param}.known_speaker_names",
        )
    try:
        return tuple(parse_known_speakers(names, clips))
    except KnownSpeakerError as exc:
        raise ConfigError("invalid_value", exc.message, f"{param}.{exc.param}") from None


#: ``semantic_vad`` eagerness -> the pause that ends a turn. There is no turn-taking model
#: here; a shorter or longer pause is the nearest server_vad behaviour, and the session
#: echoed back says server_vad, so the client sees what is applied.
SEMANTIC_PAUSE_MS = {"high": 300, "medium": 700, "auto": 700, "low": 1500}


def _turn_detection(value: Any, param: str, config: TranscriptionConfig) -> TurnDetection | None:
    if value is None:
        return None
    td = _object(value, param)
    kind = td.get("type", "server_vad")
    if kind == "semantic_vad":
        eagerness = td.get("eagerness") or "auto"
        if eagerness not in SEMANTIC_PAUSE_MS:
            choices = ", ".join(SEMANTIC_PAUSE_MS)
            raise ConfigError("invalid_value", f"eagerness must be one of: {choices}", param + ".eagerness")
        return dataclasses.replace(TurnDetection(), silence_duration_ms=SEMANTIC_PAUSE_MS[eagerness])
    if kind != "server_vad":
        raise ConfigError(
            "invalid_value",
            f"Turn detection {str(kind)[:40]!r} is not supported; use 'server_vad', 'semantic_vad' or null",
            param + ".type",
        )
    current = config.turn_detection or TurnDetection()
    try:
        threshold = float(td.get("threshold") if td.get("threshold") is not None else current.threshold)
        prefix = int(
            td.get("prefix_padding_ms")
            if td.get("prefix_padding_ms") is not None
            else current.prefix_padding_ms
        )
        silence = int(
            td.get("silence_duration_ms")
            if td.get("silence_duration_ms") is not None
            else current.silence_duration_ms
        )
    except (TypeError, ValueError):
        raise ConfigError("invalid_type", f"'{param}' fields must be numbers", param) from None
    if not 0.0 < threshold < 1.0:
        raise ConfigError("invalid_value", "threshold must be between 0 and 1", param + ".threshold")
    if not 0 <= prefix <= 5000:
        raise ConfigError("invalid_value", "prefix_padding_ms must be 0..5000", param + ".prefix_padding_ms")
    if not 100 <= silence <= 10000:
        raise ConfigError(
            "invalid_value", "silence_duration_ms must be 100..10000", param + ".silence_duration_ms"
        )
    return TurnDetection(threshold=threshold, prefix_padding_ms=prefix, silence_duration_ms=silence)


def _checked(config: TranscriptionConfig, default_model: str) -> TranscriptionConfig:
    """Model and language through the same check as files and ``/ws`` recordings."""
    try:
        language = validate_request(config.served_model(default_model), config.language, "transcribe")
    except ProtocolError as exc:
        param = "model" if exc.code == "unknown_model" else "language"
        raise ConfigError(str(exc.code), exc.message, f"session.audio.input.transcription.{param}") from None
    if config.known_speakers and not config.diarize:
        raise ConfigError(
            "invalid_value",
            f"Known speakers need speaker labels: the transcription model {DIARIZE_MODEL}",
            "session.audio.input.transcription.known_speaker_names",
        )
    return dataclasses.replace(config, language=language)
