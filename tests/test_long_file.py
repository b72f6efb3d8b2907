"""A ~3-minute file through ``/v1/audio/transcriptions`` with ``stream=true``: split at
silences into several jobs, transcribed by both workers, stitched back complete and in
order, with timestamps where each clip really sits in the file."""

from __future__ import annotations

import itertools

import httpx
import pytest

from tests import long_audio
from tests.conftest import API_KEY, Stack
from tests.helpers import wer
from whisper_appliance.transcribe_cli import stream_pieces

TOLERANCE_S = 1.0


@pytest.mark.slow
def test_three_minute_file_split_stitched_and_timed(api_stack: Stack) -> None:
    audio, placements = long_audio.build()
    assert long_audio.duration_s(placements) > 160
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=api_stack.base_url, headers=headers, timeout=600) as client:
        pieces, duration = stream_pieces(client, "long.flac", audio, model="whisper-1", language="en")

    assert duration == pytest.approx(long_audio.duration_s(placements), abs=1.0)
    assert len(pieces) >= 6, "about 3 minutes must become several pieces of at most 30 s"
    assert [p["index"] for p in pieces] == list(range(len(pieces)))
    assert len({p["worker_id"] for p in pieces}) >= 2, "both workers should have taken pieces"
    for piece in pieces:
        assert piece["end"] - piece["start"] <= 30.0
    for earlier, later in itertools.pairwise(pieces):
        assert earlier["end"] <= later["start"], "pieces must come back in file order"

    segments = [s for p in pieces for s in p["segments"]]
    for earlier, later in itertools.pairwise(segments):
        assert earlier["start"] <= later["start"]
    reference = " ".join(p.reference for p in placements)
    hypothesis = " ".join(p["transcript"] for p in pieces)
    assert wer(reference, hypothesis) <= 0.15, hypothesis

    for clip in placements:
        # The segments of this clip: those whose middle lies in its speech (pauses are 2 s).
        lo, hi = clip.speech_start_s - 0.9, clip.speech_end_s + 0.9
        own = [s for s in segments if lo <= (s["start"] + s["end"]) / 2 <= hi]
        text = " ".join(s["text"] for s in own)
        assert wer(clip.reference, text) <= 0.2, (clip.fixture_id, clip.speech_start_s, text)
        assert own[0]["start"] == pytest.approx(clip.speech_start_s, abs=TOLERANCE_S), clip
        assert own[-1]["end"] == pytest.approx(clip.speech_end_s, abs=TOLERANCE_S), clip
