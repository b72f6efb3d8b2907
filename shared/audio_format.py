"""The audio format every service agrees on, and the raw input formats a live stream may use.

The audio service decodes everything to this format, workers read it, and the gateway
names the raw formats when it opens a stream: one definition, so that no service
imports another's package to learn it.
"""

from __future__ import annotations

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
