"""The protocols as renderers of the typed events (gateway/renderers/), in-process: the
same event sequence rendered for ``/ws`` and for ``/v1/realtime``, and the file path's
events through the pure file bookkeeping (gateway/pending.py)."""

from __future__ import annotations

import time
from typing import Any

from gateway import events
from gateway.pending import PendingRequest
from gateway.renderers.browser import BrowserRenderer
from gateway.renderers.realtime import RealtimeRenderer
from gateway.worker_reply import WorkerReply
from shared import protocol


def transcript(index: int, text: str, *, final: bool) -> dict[str, Any]:
    return protocol.transcript(
        text,
        final=final,
        utterance_id=f"s-u{index}",
        language="en",
        source="real_microphone",
        start=1.0,
        end=2.5,
    )


LIVE: list[events.Event] = [
    events.RecordingStarted("s", "tiny.en"),
    events.SpeechStarted(0, 700),
    events.PartialText(0, "s-u0", transcript(0, "ask not what", final=False)),
    events.SpeechStopped(0, 2600),
    events.PartialText(0, "s-u0", transcript(0, "Ask not what your country", final=False), whole=True),
    events.UtteranceQueued(0, "s-u0", 1.0, 2.5),
    events.FinalText(0, "s-u0", transcript(0, "Ask not what your country.", final=True)),
    events.SpeechStarted(1, 3000),
    events.SpeechStopped(1, 3400),
    events.UtteranceQueued(1, "s-u1", 3.0, 3.4),
    events.UtteranceFailed(1, "s-u1", "worker_lost", "The worker stopped"),
    events.RecordingStopped("tiny.en", 2),
]


def test_browser_renders_results_and_statuses_and_hides_speech_events() -> None:
    out = [m for e in LIVE for m in BrowserRenderer(model="tiny.en").render(e)]
    assert [(m["type"], m.get("final"), m.get("recording")) for m in out] == [
        ("status", None, True),
        ("transcript", False, None),
        ("transcript", False, None),
        ("transcript", True, None),
        ("error", None, None),
        ("status", None, False),
    ]
    assert out[0]["stream_id"] == "s" and out[3]["transcript"] == "Ask not what your country."
    assert (out[4]["code"], out[4]["utterance_id"]) == ("worker_lost", "s-u1")
    assert out[5]["message"] == "Recording stopped"


def test_browser_renders_file_events_and_connection_events() -> None:
    renderer = BrowserRenderer(model="base")
    piece = {**transcript(0, "hello", final=True), "source": "upload"}
    out = [
        m
        for e in [
            events.FileReceived("r1"),
            events.FileQueued("r1", 2, 3.14159),
            events.PieceDone("r1", 0, piece),
            events.PieceFailed("r1", 1, "x-1", "timeout", "late"),
            events.FileDone("r1"),
            events.FileRefused(None, "invalid_audio", "not audio"),
            events.RequestError("invalid_json", "bad", request_id="r2"),
            events.RedisState(False),
        ]
        for m in renderer.render(e)
    ]
    assert [m.get("message") for m in out[:2]] == ["Processing audio", "Audio queued"]
    assert out[1]["pieces"] == 2 and out[1]["duration_s"] == 3.142
    assert all(m["request_id"] == "r1" for m in out[:5])
    assert (out[3]["code"], out[3]["utterance_id"]) == ("timeout", "x-1")
    assert out[4] == protocol.status("Processing complete", processing=False, request_id="r1")
    assert out[5]["code"] == "invalid_audio" and out[6]["request_id"] == "r2"
    assert out[7] == protocol.status("reconnecting", redis=False, model="base")


def test_realtime_renders_items_deltas_and_failures() -> None:
    renderer = RealtimeRenderer(server_vad=lambda: True)
    out = [m for e in LIVE for m in renderer.render(e)]
    kinds = [m["type"] for m in out]
    assert kinds == [
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.failed",
    ]
    first = {m["item_id"] for m in out[:8] if "item_id" in m}
    assert len(first) == 1  # one item for the first utterance throughout
    deltas = "".join(m["delta"] for m in out if m["type"].endswith(".delta"))
    completed = next(m for m in out if m["type"].endswith(".completed"))
    assert deltas == "ask not what your country"  # the partial's last word waits; the candidate goes whole
    assert completed["transcript"] == "Ask not what your country."
    assert completed["usage"] == {"type": "duration", "seconds": 1.5}
    assert out[-1]["error"]["code"] == "worker_lost"
    assert out[11]["previous_item_id"] == out[5]["item"]["id"]


def test_realtime_without_turn_detection_sends_no_speech_events() -> None:
    renderer = RealtimeRenderer(server_vad=lambda: False)
    out = [m for e in LIVE[:7] for m in renderer.render(e)]
    assert not any(m["type"].startswith("input_audio_buffer.speech") for m in out)
    # a commit without speech is an item with an empty transcript, not an error (OpenAI's)
    empty = renderer.render(events.CommitEmpty())
    assert [m["type"] for m in empty] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
    assert empty[2]["transcript"] == ""
    assert renderer.render(events.RecordingStopped("m", 1)) == []
    error = renderer.render(events.RequestError("invalid_event", "no", param="type", event_id="e1"))[0]
    assert (error["error"]["param"], error["error"]["event_id"]) == ("type", "e1")


def _reply(index: int, text: str, count: int = 3, **extra: Any) -> WorkerReply:
    return WorkerReply.parse(
        {"type": "transcript", "transcript": text, "count": count, "request_id": "id", "kind": "final"}
        | {"index": index, **extra}
    )


def _shown(out: list[events.FileEvent]) -> list[dict[str, Any]]:
    renderer = BrowserRenderer(model="tiny.en")
    return [m for e in out for m in renderer.render(e)]


def test_pending_request_releases_pieces_in_order() -> None:
    pending = PendingRequest("id", "client", deadline=time.monotonic() + 60)
    assert pending.add(_reply(1, "b")) == []
    first = _shown(pending.add(_reply(0, "a")))
    assert [m["transcript"] for m in first] == ["a", "b"]
    assert all("count" not in m and m["request_id"] == "client" for m in first)
    assert not pending.done
    last = pending.add(_reply(2, "c"))
    assert pending.done and isinstance(last[-1], events.FileDone)


def test_pending_request_expiry_reports_every_missing_piece() -> None:
    pending = PendingRequest("id", None, deadline=0.0, count=3, utterance_ids=["u0", "u1", "u2"])
    pending.add(_reply(0, "a"))
    errors = [m for m in _shown(pending.expire()) if m["type"] == "error"]
    assert [(e["code"], e["utterance_id"]) for e in errors] == [("timeout", "u1"), ("timeout", "u2")]
    assert pending.done


def test_a_file_without_speech_gets_one_empty_final_and_completes() -> None:
    pending = PendingRequest("id", "c", deadline=time.monotonic() + 60, source="upload")
    out = pending.queued([], 4.0)
    assert [type(e) for e in out] == [events.FileQueued, events.PieceDone, events.FileDone]
    assert out[1].message["no_speech"] is True and out[1].message["end"] == 4.0  # type: ignore[union-attr]
