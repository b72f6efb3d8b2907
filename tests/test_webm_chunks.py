"""The live benchmarks and tests pace WebM chunks at one per 250 ms: each must hold 250 ms
of audio, speech and silence alike, or the measured latencies carry the pacing's delay."""

from __future__ import annotations

import itertools

import numpy as np

from tests.helpers import chunk_stream, ffmpeg_convert, fixture_pcm, pcm_to_webm
from tests.webm_chunks import block_times


def _decoded_s(data: bytes) -> float:
    return len(ffmpeg_convert(data, "-f", "s16le", "-ar", "16000", "-ac", "1")) / 32000


def test_every_prefix_of_chunks_holds_its_share_of_audio_through_speech_and_silence() -> None:
    speech = fixture_pcm("jfk")[: 4 * 16000]
    silence = np.zeros(3 * 16000, dtype=np.int16)  # Opus spends almost nothing on it
    pcm = np.concatenate([speech, silence, speech, silence])
    webm = pcm_to_webm(pcm)
    chunks = chunk_stream(webm, len(pcm) / 16000, 0.25)
    assert abs(len(chunks) - len(pcm) / 16000 / 0.25) <= 1
    for k in (8, 16, 28, 40, 52):  # inside speech, at its end, deep in silence, ...
        assert abs(_decoded_s(b"".join(chunks[:k])) - k * 0.25) < 0.05, k
    assert b"".join(chunks) == webm


def test_block_times_rise_in_20_ms_steps_and_other_formats_are_not_read() -> None:
    times = [t for _, t in block_times(pcm_to_webm(fixture_pcm("jfk")[: 2 * 16000]))]
    assert times[0] == 0.0 and 1.95 < times[-1] < 2.05
    assert all(abs((b - a) - 0.02) < 0.002 for a, b in itertools.pairwise(times))
    assert block_times(b"RIFF....WAVEfmt ") == [] and block_times(b"") == []
