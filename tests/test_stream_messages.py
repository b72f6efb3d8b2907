"""The audio service's side of the /stream protocol, in process (no socket, no VAD model):
the JSON it sends is the same bytes as before the typed messages, a client's turn
detection maps onto the segmenter, and ``configure`` changes only the fields it sets."""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from audio_service.pcm_input import PcmDecoder
from audio_service.streams import LiveStream
from shared.audio_format import G711_ULAW, PCM16_24K
from shared.config import Settings
from shared.stream_protocol import (
    Cleared,
    CommitEmpty,
    Configure,
    FinalQueued,
    SpeechStarted,
    SpeechStopped,
    Started,
    Stopped,
    StreamError,
    VadSettings,
    parse_control,
)


def _starlette_json(message: dict[str, Any]) -> str:
    """What ``WebSocket.send_json`` sent before."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("event", "before"),
    [
        (Started(), {"type": "started"}),
        (
            FinalQueued(utterance_id="s-u0", index=0, seq=3, start=0.25, end=2.5),
            {"type": "final_queued", "utterance_id": "s-u0", "index": 0, "seq": 3, "start": 0.25, "end": 2.5},
        ),
        (Stopped(finals=2), {"type": "stopped", "finals": 2}),
        (
            StreamError(code="invalid_audio", message="Could not decode the stream (é)"),
            {"type": "error", "code": "invalid_audio", "message": "Could not decode the stream (é)"},
        ),
        (
            SpeechStarted(index=1, audio_ms=1234, kept=True),
            {"type": "speech_started", "index": 1, "audio_ms": 1234, "kept": True},
        ),
        (
            SpeechStopped(index=1, audio_ms=2000, kept=False),
            {"type": "speech_stopped", "index": 1, "audio_ms": 2000, "kept": False},
        ),
        (Cleared(index=2, seq=9), {"type": "cleared", "index": 2, "seq": 9}),
        (CommitEmpty(), {"type": "commit_empty"}),
    ],
)
def test_events_keep_their_wire_json(event: Any, before: dict[str, Any]) -> None:
    assert event.to_json() == _starlette_json(before)


def _stream() -> SimpleNamespace:
    """A LiveStream's state without its socket, queue or segmenter (no VAD model loaded)."""
    settings = Settings()
    stream = SimpleNamespace(settings=settings, language="en", model="tiny.en", prompt="hi", format=None)
    stream.segmenter = SimpleNamespace(options=None)
    stream._segmenter_options = lambda vad: LiveStream._segmenter_options(stream, vad)  # type: ignore[arg-type]
    return stream


def test_turn_detection_maps_onto_the_segmenter() -> None:
    stream = _stream()
    default = LiveStream._segmenter_options(stream, None)  # type: ignore[arg-type]
    assert default.pause_s == stream.settings.vad_pause_s
    absent = LiveStream._segmenter_options(stream, VadSettings(threshold=0.7))  # type: ignore[arg-type]
    assert absent.pause_s == default.pause_s and absent.threshold == 0.7
    assert absent.neg_threshold == pytest.approx(0.55) and absent.preroll_s == default.preroll_s
    parsed = parse_control('{"type": "configure", "vad": {"pause_s": null, "preroll_s": 0.5}}')
    assert isinstance(parsed, Configure)
    commit_only = LiveStream._segmenter_options(stream, parsed.vad)  # type: ignore[arg-type]
    assert math.isinf(commit_only.pause_s) and commit_only.preroll_s == 0.5
    assert commit_only.threshold == default.threshold


def test_configure_changes_only_what_it_sets() -> None:
    stream = _stream()
    LiveStream._configure(stream, parse_control('{"type": "configure", "language": "de"}'))  # type: ignore[arg-type]
    assert (stream.language, stream.model, stream.prompt, stream.segmenter.options) == (
        "de",
        "tiny.en",
        "hi",
        None,
    )
    LiveStream._configure(
        stream,  # type: ignore[arg-type]
        parse_control('{"type": "configure", "model": "", "prompt": "", "language": null, "vad": {}}'),  # type: ignore[arg-type]
    )
    assert stream.language is None and stream.model == "tiny.en" and stream.prompt is None
    assert stream.segmenter.options is not None  # vad given: the segmenter's options are rebuilt


def test_a_raw_format_change_applies_behind_the_audio_fed_so_far() -> None:
    async def run() -> list[Any]:
        decoder = await PcmDecoder.start(PCM16_24K)
        await decoder.feed(b"\x10\x00" * 2400)  # 100 ms at 24 kHz
        decoder.control(parse_control('{"type": "configure", "format": "g711_ulaw"}'))  # type: ignore[arg-type]
        decoder.control(parse_control('{"type": "configure", "language": "de"}'))  # type: ignore[arg-type]
        await decoder.feed(b"\xff" * 800)
        decoder.end_input()
        out = []
        while (item := await decoder.read()) != b"":
            out.append(item)
        return out

    items = asyncio.run(run())
    kinds = ["pcm" if isinstance(i, bytes) else i.type for i in items]
    first = kinds.index("configure")
    assert "pcm" in kinds[:first] and kinds[first : first + 2] == ["configure", "configure"]
    assert kinds[first + 2 :] and set(kinds[first + 2 :]) == {"pcm"}
    assert G711_ULAW in {getattr(i, "format", None) for i in items}
