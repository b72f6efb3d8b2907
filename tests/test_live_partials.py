"""Partial scheduling on a real stack (issue 14 parts 3, 5, 6): the first partial of an
utterance comes early, and under load partials are thinned and paused, with a ``status``
when they pause and resume, while every final still arrives."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from shared.config import Settings
from tests.conftest import Stack
from tests.helpers import chunk_stream, finals, fixture_webm, manifest, stream_live, wer

#: Every test here starts the whole stack and streams live to it: the slow tier.
pytestmark = pytest.mark.slow


def _first_text_span(messages: list[dict[str, object]], utterance_id: str) -> float:
    """Audio seconds the utterance's first transcript covers, from the utterance's start."""
    texts = [m for m in messages if m.get("type") == "transcript" and m["utterance_id"] == utterance_id]
    final = next(m for m in texts if m["final"])
    return float(texts[0]["end"]) - float(final["start"])  # type: ignore[arg-type]


def test_first_partial_comes_after_half_a_second_of_speech(stack: Stack) -> None:
    """The first utterance of jfk (2.4 s) shows text made from pre-roll plus
    ``S2T_FIRST_PARTIAL_S`` of speech (0.8 s of audio), not the cadence's full second."""
    item = manifest()["jfk"]
    with connect(stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(fixture_webm("jfk"), item["duration_s"]))
    done = finals(result.messages)
    assert wer(item["reference"], " ".join(m["transcript"] for m in done)) <= 0.15, done
    first = done[0]
    assert float(first["end"]) - float(first["start"]) > 1.5, first  # long enough to have partials
    preroll = 0.3
    span = _first_text_span(result.messages, str(first["utterance_id"]))
    assert not next(m for m in result.messages if m.get("type") == "transcript")["final"]
    assert span <= preroll + Settings().first_partial_s + 0.15, (span, result.messages[:6])
