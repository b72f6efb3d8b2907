"""Whisper backends behind one small protocol, the way RQ makes serializers pluggable:
a :class:`Transcriber` turns 16 kHz float audio into a :class:`Transcription`, and
:func:`load_transcriber` picks the implementation for a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

log = structlog.get_logger()


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = None  # None: detect
    task: str = "transcribe"
    beam_size: int = 5
    initial_prompt: str | None = None
    word_timestamps: bool = False
    without_timestamps: bool = False  # fewer tokens to decode when segment times are not needed
    temperature: float | None = None  # None: the backend's fallback schedule from 0.0 upwards
    #: False: decode once at ``temperature`` (0 when unset) and keep it. The fallback schedule
    #: re-decodes hard windows at higher temperatures, which on short clips trades a stumble
    #: for invented words (README, "Decode settings").
    temperature_fallback: bool = True
    condition_on_previous_text: bool = False  # prompt each 30 s window with the last one's text
    #: Let the backend run its own VAD and decode only the speech (faster-whisper's
    #: ``vad_filter``); the audio service has already cut at pauses, so off by default.
    vad_filter: bool = False
    #: The audio's first seconds are left context (the stream before a live utterance): the
    #: model hears them, and only the words whose middle lies after them are returned.
    emit_after_s: float = 0.0
    #: >0: the encoder sees only this many seconds (the audio padded to them) instead of
    #: Whisper's 30 s window: live partials, which are replaced anyway (README, "Partials").
    #: Backends without a shorter encoder path (openai-whisper) ignore it.
    encoder_window_s: float = 0.0


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    words: list[Word] | None = None  # only when DecodeOptions.word_timestamps


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str | None
    language_probability: float | None
    segments: list[Segment] = field(default_factory=list)


class Transcriber(Protocol):
    name: str  # as the job asked for it, ``@backend`` suffix included
    backend: str
    multilingual: bool
    languages: tuple[str, ...]  # codes it accepts; ("en",) for English-only models

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription: ...


class BatchTranscriber(Transcriber, Protocol):
    """A backend that can also decode several pieces in one model call (faster-whisper).
    The worker batches only with backends that have it; others take jobs one by one."""

    def transcribe_batch(
        self,
        items: Sequence[tuple[np.ndarray, DecodeOptions]],
        *,
        reraise: tuple[type[BaseException], ...] = (),
    ) -> list[Transcription | Exception]:
        """Each piece's result, or the exception that piece raised, at its index; the text
        equals :meth:`transcribe` on each piece alone. ``reraise``: exception types that end
        the whole batch (the worker's time limit) instead of failing one piece."""
        ...


def load_transcriber(name: str, *, device: str, compute_type: str, cpu_threads: int) -> Transcriber:
    """The backend the registry names for this model (``@backend`` suffix, a ``.pt``
    checkpoint, else ``S2T_BACKEND``). When faster-whisper cannot load a model and
    openai-whisper is installed, the same weights (or a ``.pt`` for the name, when the
    CTranslate2 weights are missing) are loaded there instead: a worker that can still
    transcribe beats one that cannot, and ``backend`` in every reply says which ran.
    When both fail, the faster-whisper error is raised."""
    from shared.models import ModelUnavailableError, lookup
    from whisper_service.backends import openai_whisper_backend as openai_backend

    if lookup(name).backend == "openai-whisper":
        return openai_backend.OpenAIWhisperTranscriber(name, device=device, cpu_threads=cpu_threads)
    try:
        from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber

        return FasterWhisperTranscriber(
            name, device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
    except Exception as exc:
        missing_weights = (
            isinstance(exc, ModelUnavailableError) and openai_backend.find_checkpoint(name) is None
        )
        if missing_weights or not openai_backend.is_installed():
            raise
        log.warning("faster_whisper_load_failed_trying_openai_whisper", model=name, error=repr(exc)[:300])
        try:
            return openai_backend.OpenAIWhisperTranscriber(name, device=device, cpu_threads=cpu_threads)
        except Exception as fallback_exc:
            log.warning("openai_whisper_fallback_failed", model=name, error=repr(fallback_exc)[:300])
            raise exc from fallback_exc
