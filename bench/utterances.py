"""Utterance-length clips (2–6 s of speech) cut from the speech fixtures in memory.

Throughput is measured per utterance, the unit a live stream or a short voice note
sends, so the fixtures are cut at pauses with the same Silero VAD the audio service
uses (``speech_regions``), never mid-word. Each clip is encoded to FLAC through
ffmpeg's pipes (what a client would upload; nothing is written to disk) once, before
any clock runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_service.decoder import SAMPLE_RATE
from audio_service.splitter import speech_regions
from tests.helpers import ffmpeg_convert, fixture_pcm

MIN_S = 2.0
MAX_S = 6.0
PAD_S = 0.2  # kept either side of the speech, inside the pause


@dataclass(frozen=True)
class Utterance:
    fixture: str
    audio_s: float
    flac: bytes


def group_regions(regions: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """Consecutive speech regions packed into spans of MIN_S..MAX_S (plus padding);
    a span shorter than MIN_S that cannot grow is dropped."""
    lo_len, hi_len = int(MIN_S * SAMPLE_RATE), int(MAX_S * SAMPLE_RATE)
    pad = int(PAD_S * SAMPLE_RATE)
    spans: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for start, end in regions:
        if current is not None and end - current[0] <= hi_len:
            current = (current[0], end)
            continue
        if current is not None and current[1] - current[0] >= lo_len:
            spans.append(current)
        current = (start, end)
    if current is not None and current[1] - current[0] >= lo_len:
        spans.append(current)
    return [(max(0, s - pad), min(total, e + pad)) for s, e in spans]


def to_flac(pcm: np.ndarray) -> bytes:
    return ffmpeg_convert(
        pcm.astype("<i2").tobytes(), "-c:a", "flac", "-f", "flac",
        input_args=("-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1"),
    )  # fmt: skip


def cut(fixtures: list[str]) -> list[Utterance]:
    out = []
    for fixture_id in fixtures:
        pcm = fixture_pcm(fixture_id)
        regions = speech_regions(pcm.astype(np.float32) / 32768.0, max_region_s=MAX_S)
        for start, end in group_regions(regions, len(pcm)):
            out.append(Utterance(fixture_id, round((end - start) / SAMPLE_RATE, 2), to_flac(pcm[start:end])))
    return out
