"""faster-whisper (CTranslate2): int8 on CPU by default, float16 on CUDA when present."""

from __future__ import annotations

import numpy as np

from shared.languages import languages_for
from shared.models import materialize
from whisper_service.backends import DecodeOptions, Segment, Transcription, Word


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "default":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class FasterWhisperTranscriber:
    backend = "faster-whisper"

    def __init__(self, name: str, *, device: str, compute_type: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        self.name = name
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.model = WhisperModel(
            materialize(name),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads,
            num_workers=1,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        self.languages = tuple(languages_for(self.multilingual, self.model.model.num_languages))

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        segments, info = self.model.transcribe(
            audio,
            language=options.language if self.multilingual else "en",
            task=options.task if self.multilingual else "transcribe",
            beam_size=options.beam_size,
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            without_timestamps=options.without_timestamps,
            condition_on_previous_text=False,
            vad_filter=False,
            **_temperature(options.temperature),
        )
        segs = [
            Segment(
                s.start,
                s.end,
                s.text.strip(),
                s.no_speech_prob,
                s.avg_logprob,
                s.compression_ratio,
                s.temperature or 0.0,
                None if s.words is None else [Word(w.start, w.end, w.word, w.probability) for w in s.words],
            )
            for s in segments
        ]
        return Transcription(
            text=" ".join(s.text for s in segs if s.text).strip(),
            language=info.language,
            language_probability=info.language_probability,
            segments=segs,
        )


def _temperature(temperature: float | None) -> dict[str, float]:
    """OpenAI's convention: 0 (or nothing) lets the model raise the temperature when decoding
    fails, so keep faster-whisper's fallback schedule; a positive value is used as given."""
    return {"temperature": temperature} if temperature else {}
