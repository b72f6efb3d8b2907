"""Whisper backends behind one small protocol, the way RQ makes serializers pluggable:
a :class:`Transcriber` turns 16 kHz float audio into a :class:`Transcription`, and
:func:`load_transcriber` picks the implementation for a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = None  # None: detect
    task: str = "transcribe"
    beam_size: int = 5
    initial_prompt: str | None = None
    word_timestamps: bool = False
    without_timestamps: bool = False  # fewer tokens to decode when segment times are not needed
    temperature: float | None = None  # None: the backend's fallback schedule from 0.0 upwards


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
    name: str
    backend: str
    multilingual: bool

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription: ...


def load_transcriber(name: str, *, device: str, compute_type: str, cpu_threads: int) -> Transcriber:
    from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber

    return FasterWhisperTranscriber(name, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
