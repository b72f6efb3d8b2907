"""The audio format every service agrees on, and the raw input formats a live stream may use.

The audio service decodes everything to this format, workers read it, and the gateway
names the raw formats when it opens a stream: one definition, so that no service
imports another's package to learn it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Samples per second of the PCM that travels between services (Whisper's rate).
SAMPLE_RATE = 16000
#: int16 little-endian mono.
BYTES_PER_SAMPLE = 2

#: Raw live-stream formats the audio service reads without ffmpeg (OpenAI Realtime's).
PCM16_24K = "pcm16_24000"
G711_ULAW = "g711_ulaw"
G711_ALAW = "g711_alaw"
RAW_FORMATS = (PCM16_24K, G711_ULAW, G711_ALAW)


def pcm_seconds(pcm: bytes) -> float:
    """Duration of a PCM buffer in this format."""
    return len(pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE


# --- raw PCM at any rate (Deepgram's ``linear16``, WhisperLive's float32) ---------------


@dataclass(frozen=True)
class RawSpec:
    """What a raw format name stands for: sample type, rate, interleaved channels."""

    sample: str  # "pcm16" (int16 LE), "f32" (float32 LE), "g711_ulaw", "g711_alaw"
    rate: int
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return {"pcm16": 2, "f32": 4}.get(self.sample, 1) * self.channels

    def seconds(self, size: int) -> float:
        """How long ``size`` bytes of this format play."""
        return size / (self.frame_bytes * self.rate)


_RAW_NAME = re.compile(r"^(pcm16|f32|g711_ulaw|g711_alaw)(?:_(\d{4,6}))?(?:_(\d)ch)?$")
#: The rate a name without one means: OpenAI Realtime's names above.
_DEFAULT_RATES = {"pcm16": 24000, "f32": SAMPLE_RATE, "g711_ulaw": 8000, "g711_alaw": 8000}
MIN_RAW_RATE, MAX_RAW_RATE, MAX_RAW_CHANNELS = 4000, 192000, 8


def raw_format(sample: str, rate: int, channels: int = 1) -> str:
    """The stream ``format`` name of raw samples, e.g. ``pcm16_44100_2ch``; the inverse of
    :func:`parse_raw_format`. One name carries everything, so the stream protocol needs
    no new fields for Deepgram's ``encoding``/``sample_rate``/``channels``."""
    name = f"{sample}_{rate}" + (f"_{channels}ch" if channels != 1 else "")
    if parse_raw_format(name) is None:
        raise ValueError(f"not a raw format: {name}")
    return name


def parse_raw_format(fmt: str | None) -> RawSpec | None:
    """The raw format a stream ``format`` names, or None (an encoded format for ffmpeg)."""
    match = _RAW_NAME.match(fmt or "")
    if match is None:
        return None
    sample, rate, channels = match.group(1), match.group(2), match.group(3)
    spec = RawSpec(sample, int(rate) if rate else _DEFAULT_RATES[sample], int(channels) if channels else 1)
    if not MIN_RAW_RATE <= spec.rate <= MAX_RAW_RATE or not 1 <= spec.channels <= MAX_RAW_CHANNELS:
        return None
    return spec


def is_raw_format(fmt: str | None) -> bool:
    return parse_raw_format(fmt) is not None
