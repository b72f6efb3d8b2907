"""openai-whisper (PyTorch), the optional ``[openai]`` extra.

It runs the reference implementation of Whisper, which is what the original appliance
fell back to. Weights come from an openai-whisper ``.pt`` checkpoint when one is on
disk (a path, ``S2T_MODELS_DIR/NAME.pt``, or openai-whisper's own cache), otherwise
from the CTranslate2 folder the registry resolves, converted in memory by
:mod:`whisper_service.backends.ct2_convert`, so it works offline on the bundled models.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.languages import languages_for
from shared.models import (
    ModelUnavailableError,
    installed_backends,
    local_checkpoint,
    materialize,
    split_backend,
)
from whisper_service.backends import DecodeOptions, Segment, Transcription


def is_installed() -> bool:
    return "openai-whisper" in installed_backends()


def find_checkpoint(name: str) -> Path | None:
    """A real ``.pt`` for this name, preferred over converting CTranslate2 weights."""
    base = split_backend(name)[0]
    found = local_checkpoint(base)
    if found is not None:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper" / f"{base}.pt"
    return cache if "/" not in base and cache.is_file() else None


def resolve_torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class OpenAIWhisperTranscriber:
    backend = "openai-whisper"

    def __init__(self, name: str, *, device: str, cpu_threads: int) -> None:
        try:
            import torch
            import whisper
        except ImportError as exc:
            raise ModelUnavailableError(
                f"The openai-whisper backend is not installed here ({exc}); "
                "install torch, then pip install 'whisper-appliance[openai]'"
            ) from exc
        from whisper_service.backends.ct2_convert import load_whisper_from_ct2

        self.name = name
        self.device = resolve_torch_device(device)
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        checkpoint = find_checkpoint(name)
        if checkpoint is not None:
            self.weights = str(checkpoint)
            self.model = whisper.load_model(self.weights, device=self.device)
        else:
            self.weights = materialize(name)
            self.model = load_whisper_from_ct2(self.weights, device=self.device)
        self.multilingual = bool(self.model.is_multilingual)
        self.languages = tuple(languages_for(self.multilingual, self.model.num_languages))

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The most likely language of the first 30 s and its probability."""
        import torch
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels)
        with torch.no_grad():
            _, probs = self.model.detect_language(mel.to(self.device))
        language = max(probs, key=probs.get)
        return language, float(probs[language])

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        import whisper

        language = options.language if self.multilingual else "en"
        probability = 1.0  # what faster-whisper reports for a language it was told
        if language is None:
            language, probability = self.detect_language(audio)
        result = whisper.transcribe(
            self.model,
            audio.astype(np.float32, copy=False),
            language=language,
            task=options.task if self.multilingual else "transcribe",
            beam_size=options.beam_size,
            best_of=options.beam_size,
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            condition_on_previous_text=options.condition_on_previous_text,
            **({} if options.temperature_fallback else {"temperature": options.temperature or 0.0}),
            fp16=self.device.startswith("cuda"),
            verbose=None,
        )
        segs = [
            Segment(
                float(s["start"]),
                float(s["end"]),
                str(s["text"]).strip(),
                float(s["no_speech_prob"]),
                float(s["avg_logprob"]),
            )
            for s in result["segments"]
        ]
        return Transcription(
            text=" ".join(s.text for s in segs if s.text).strip(),
            language=language,
            language_probability=probability,
            segments=segs,
        )
