"""A long recording built in memory from the speech fixtures, with pauses between them,
and where each fixture's speech sits in it: the ground truth for stitching and timestamps
(used by the long-file test and by ``bench.file_scaling``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_service.splitter import speech_regions
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest

RATE = 16000
#: English only: the default model is tiny.en. Seven clips and pauses make about 3 minutes.
ORDER = ("jfk", "osr_us_000_0034", "jfk", "osr_us_000_0034", "jfk", "osr_us_000_0034", "jfk")
PAUSE_S = 2.0
LEAD_S = 1.0


@dataclass(frozen=True)
class Placement:
    fixture_id: str
    reference: str
    speech_start_s: float  # where the clip's speech starts and ends in the long file
    speech_end_s: float


def pcm16k(fixture_id: str) -> np.ndarray:
    raw = ffmpeg_convert(fixture_bytes(fixture_id), "-ac", "1", "-ar", str(RATE), "-f", "s16le")
    return np.frombuffer(raw, dtype="<i2")


def build(order: tuple[str, ...] = ORDER, pause_s: float = PAUSE_S) -> tuple[bytes, list[Placement]]:
    """FLAC bytes of the clips in ``order`` separated by ``pause_s`` of silence, and where
    each clip's speech lies (found with the same VAD the service uses, on the clip alone)."""
    refs = manifest()
    parts = [np.zeros(int(LEAD_S * RATE), dtype="<i2")]
    placements = []
    position = len(parts[0])
    for fixture_id in order:
        clip = pcm16k(fixture_id)
        regions = speech_regions(clip.astype(np.float32) / 32768.0)
        placements.append(
            Placement(
                fixture_id,
                refs[fixture_id]["reference"],
                (position + regions[0][0]) / RATE,
                (position + regions[-1][1]) / RATE,
            )
        )
        parts += [clip, np.zeros(int(pause_s * RATE), dtype="<i2")]
        position += len(clip) + len(parts[-1])
    pcm = np.concatenate(parts).astype("<i2").tobytes()
    flac = ffmpeg_convert(
        pcm, "-c:a", "flac", "-f", "flac", input_args=("-f", "s16le", "-ac", "1", "-ar", str(RATE))
    )
    return flac, placements


def duration_s(placements: list[Placement]) -> float:
    return placements[-1].speech_end_s + PAUSE_S
