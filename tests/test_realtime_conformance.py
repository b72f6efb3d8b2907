"""Conformance of ``/v1/realtime`` with OpenAI's Realtime transcription API, fast tier.

OpenAI's documented client event sequences (server VAD; manual commits; clear; session
updates mid-session; the GA ``session.update`` and the beta ``transcription_session.update``
shapes) are replayed against the session's real state machine
(:mod:`tests.realtime_harness`: the real protocol handler, renderer and utterance machine,
with the audio service and workers scripted), and EVERY server event is validated against
the ``openai`` package's own pydantic model for its ``type`` (``openai.types.realtime`` for
GA clients, ``openai.types.beta.realtime`` for beta ones): strictly, and with no field the
model does not declare. The SDK's client itself parses without validating, so a wrong
shape would reach its users unnoticed; this is where it is caught.

Known gaps of the SDK's types (not of the wire), allowed by name below:
``transcription_session.created`` is what OpenAI's beta sent a transcription session but
is missing from the beta union (its session is the ``TranscriptionSession`` that
``transcription_session.updated`` carries); that type requires ``client_secret``, which
its own docstring says is "not present when a session is updated via the WebSocket API";
the beta's ``input_audio_transcription.model`` is a closed list of three names, older than
the GA's models and the service's own (``tiny.en``); ``error.retry_after_s`` is our
``busy`` extension.
"""

from __future__ import annotations

from collections import deque
from typing import Any, get_args

import pytest
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime import TranscriptionSessionUpdatedEvent
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from shared import stream_protocol as sp
from tests.realtime_harness import FakeConnection, silence, speech

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
ALLOWED_EXTRAS = {("error", "retry_after_s")}


def _by_type(union: Any) -> dict[str, type[BaseModel]]:
    members = get_args(get_args(union)[0])  # Annotated[Union[...], discriminator]
    return {get_args(m.model_fields["type"].annotation)[0]: m for m in members}


GA_TYPES = _by_type(RealtimeServerEvent)
BETA_TYPES = {
    **_by_type(BetaServerEvent),
    "transcription_session.created": TranscriptionSessionUpdatedEvent,  # see the module docstring
}


def conforms(event: dict[str, Any], *, beta: bool = False) -> BaseModel:
    """The SDK's model for the event's type, validated strictly, with no undeclared field."""
    types = BETA_TYPES if beta else GA_TYPES
    assert event["type"] in types, f"{event['type']} is not a {'beta' if beta else 'GA'} server event"
    model = types[event["type"]]
    payload = event
    if model is TranscriptionSessionUpdatedEvent:
        payload = {**event, "type": "transcription_session.updated"}
        payload["session"] = {"client_secret": {"expires_at": 0, "value": ""}, **event["session"]}
    try:
        parsed = model.model_validate(payload, strict=True)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not _newer_model_name(e)]
        if errors:
            raise AssertionError(f"{event['type']} does not match {model.__name__}: {errors}") from None
        session = {
            **payload["session"],
            "input_audio_transcription": {
                **payload["session"]["input_audio_transcription"],
                "model": "whisper-1",
            },
        }
        parsed = model.model_validate({**payload, "session": session}, strict=True)  # the rest, checked
    extras = list(_extras(parsed, event["type"]))
    assert not extras, f"{event['type']}: fields the SDK's type does not declare: {extras}"
    return parsed


def _newer_model_name(error: Any) -> bool:
    """The beta's model names are a closed list from before the GA's models and ours."""
    return error["type"] == "literal_error" and error["loc"][-2:] == ("input_audio_transcription", "model")


def _extras(value: Any, path: str) -> Any:
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            if (path.rsplit(".", 1)[-1], name) not in ALLOWED_EXTRAS:
                yield f"{path}.{name}"
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _extras(item, f"{path}[{n}]")


def ga_update(turn_detection: Any = "unset", **transcription: Any) -> dict[str, Any]:
    audio_input: dict[str, Any] = {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "whisper-1", "language": "en", **transcription},
    }
    if turn_detection != "unset":
        audio_input["turn_detection"] = turn_detection
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}


SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["type"] != DELTA]


def item_sequences(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        item_id = e.get("item_id") or e.get("item", {}).get("id")
        if item_id and e["type"] != DELTA:
            out.setdefault(item_id, []).append(e["type"])
    return out


def check_items(events: list[dict[str, Any]], *, beta: bool = False) -> None:
    """What every client relies on: one answer per committed item, chained in order, and
    the deltas of an item appending up to its completed transcript."""
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    completed = [e for e in events if e["type"] == COMPLETED]
    assert [e["item_id"] for e in committed] == [e["item_id"] for e in completed]
    previous = [e["previous_item_id"] for e in committed]
    assert previous == [None, *(e["item_id"] for e in committed[:-1])]
    for e in completed:
        deltas = "".join(d["delta"] for d in events if d["type"] == DELTA and d["item_id"] == e["item_id"])
        assert deltas.split() == e["transcript"].split(), (deltas, e["transcript"])
    added = "conversation.item.created" if beta else "conversation.item.added"
    for sequence in item_sequences(events).values():
        core = [k for k in sequence if not k.startswith("input_audio_buffer.speech_")]
        assert core == [
            "input_audio_buffer.committed",
            added,
            COMPLETED,
            *([] if beta else ["conversation.item.done"]),
        ]


async def test_server_vad_sequence_ga() -> None:
    """OpenAI's server-VAD flow: speech_started, speech_stopped, committed, item added,
    deltas, completed, item done; per item, in audio order."""
    conn = FakeConnection(transcripts=deque(["Ask not what your country can do.", "And so."]))
    events = await conn.open()
    assert events[0]["type"] == "session.created"
    events += await conn.send(ga_update(SERVER_VAD))
    events += await conn.append(speech(900))
    assert conn.recording is not None
    conn.recording.partial("Ask not what")
    conn.recording.partial("Ask not what your country")
    events += conn.take()
    events += await conn.append(silence(600) + speech(400) + silence(600))
    for event in events:
        conforms(event)
    check_items(events)
    assert kinds(events)[:2] == ["session.created", "session.updated"]
    starts = [e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    stops = [e["audio_end_ms"] for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    assert len(starts) == len(stops) == 2 and starts[0] < stops[0] < starts[1] < stops[1]
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == [
        "Ask not what your country can do.",
        "And so.",
    ]
    early = [e for e in events[: events.index(next(e for e in events if e["type"] == COMPLETED))]]
    assert any(e["type"] == DELTA for e in early), "a partial's words come before the final"


async def test_manual_commits_ga() -> None:
    """``turn_detection: null``: only a commit ends an item; under 100 ms is refused as
    OpenAI refuses it (and the buffer is kept); silence is an item with an empty transcript."""
    conn = FakeConnection(transcripts=deque(["Not.", "Two."]))
    events = await conn.open()
    events += await conn.send(ga_update(None))
    assert events[-1]["session"]["audio"]["input"]["turn_detection"] is None
    events += await conn.append(speech(300))
    events += await conn.send({"type": "input_audio_buffer.commit", "event_id": "evt_1"})
    refused = await conn.append(speech(60)) + await conn.send(
        {"type": "input_audio_buffer.commit", "event_id": "evt_2"}
    )
    assert kinds(refused) == ["error"]
    error = refused[0]["error"]
    assert (error["code"], error["event_id"], error["type"]) == (
        "input_audio_buffer_commit_empty",
        "evt_2",
        "invalid_request_error",
    )
    assert "60.00ms" in error["message"]
    events += refused
    events += await conn.append(speech(60))  # 120 ms now: the kept 60 ms and these
    events += await conn.send({"type": "input_audio_buffer.commit"})
    events += await conn.append(silence(500))
    events += await conn.send({"type": "input_audio_buffer.commit"})
    for event in events:
        conforms(event)
    items = [e for e in events if e["type"] != "error"]
    check_items(items)
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == ["Not.", "Two.", ""]
    assert not [e for e in events if e["type"].startswith("input_audio_buffer.speech_")]


async def test_clear_empties_the_buffer_ga() -> None:
    conn = FakeConnection(transcripts=deque(["After the clear."]))
    events = await conn.open()
    events += await conn.send(ga_update(None))
    events += await conn.append(speech(500))
    cleared = await conn.send({"type": "input_audio_buffer.clear"})
    assert kinds(cleared) == ["input_audio_buffer.cleared"]
    refused = await conn.send({"type": "input_audio_buffer.commit"})
    assert refused[0]["error"]["code"] == "input_audio_buffer_commit_empty"
    assert "0.00ms" in refused[0]["error"]["message"]
    events += cleared + refused
    events += await conn.append(speech(400))
    events += await conn.send({"type": "input_audio_buffer.commit"})
    for event in events:
        conforms(event)
    check_items([e for e in events if e["type"] != "error"])
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == ["After the clear."]


async def test_mid_session_updates_apply_to_the_audio_to_come() -> None:
    """``session.update`` and ``transcription_session.update`` while audio flows: the
    running stream is reconfigured (no new stream); what is echoed is what is applied."""
    conn = FakeConnection(transcripts=deque(["First.", "Second."]))
    events = await conn.open()
    events += await conn.send(ga_update(SERVER_VAD))
    events += await conn.append(speech(500) + silence(600))
    updated = await conn.send(ga_update(None, prompt="Harvard sentences."))
    assert updated[0]["session"]["audio"]["input"]["turn_detection"] is None
    assert updated[0]["session"]["audio"]["input"]["transcription"]["prompt"] == "Harvard sentences."
    events += updated
    events += await conn.append(speech(500) + silence(600))  # no pause detection now
    assert kinds(events).count(COMPLETED) == 1
    events += await conn.send({"type": "input_audio_buffer.commit"})
    beta_update = {"type": "transcription_session.update", "session": {"turn_detection": SERVER_VAD}}
    echoed = await conn.send(beta_update)
    assert kinds(echoed) == ["transcription_session.updated"]
    assert echoed[0]["session"]["turn_detection"]["type"] == "server_vad"
    conforms(echoed[0], beta=True)
    for event in events:
        conforms(event)
    check_items(events)
    assert len(conn.starts) == 1  # one stream all along
    assert conn.recording is not None
    configures = [c for c in conn.recording.controls if isinstance(c, sp.Configure)]
    assert [c.vad.pause_s if c.vad else None for c in configures] == [None, 0.5]
    assert configures[0].prompt == "Harvard sentences."


async def test_beta_client_gets_the_beta_shapes() -> None:
    """The SDK's ``beta.realtime`` client (``OpenAI-Beta: realtime=v1``) with
    ``transcription_session.update``, G.711 mu-law, server VAD, then manual commits."""
    conn = FakeConnection(transcripts=deque(["Hello.", "Again."]), headers={"openai-beta": "realtime=v1"})
    events = await conn.open()
    assert kinds(events) == ["transcription_session.created"]
    update = {
        "input_audio_format": "g711_ulaw",
        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
    }
    events += await conn.send({"type": "transcription_session.update", "session": update})
    assert events[-1]["session"]["input_audio_format"] == "g711_ulaw"
    events += await conn.append(speech(600, 8) + silence(600, 8), chunk=800)
    events += await conn.send({"type": "transcription_session.update", "session": {"turn_detection": None}})
    events += await conn.append(speech(300, 8), chunk=800)
    events += await conn.send({"type": "input_audio_buffer.commit"})
    for event in events:
        conforms(event, beta=True)
    check_items(events, beta=True)
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == ["Hello.", "Again."]


@pytest.mark.parametrize("shape", ["ga", "beta"])
async def test_client_side_turn_model_defaults_to_no_turn_detection(shape: str) -> None:
    """``gpt-realtime-whisper`` serves client-side turns only (OpenAI's types): with no
    ``turn_detection`` sent the session is null, and server VAD is refused."""
    headers = {"openai-beta": "realtime=v1"} if shape == "beta" else {}
    conn = FakeConnection(transcripts=deque(["Ask."]), headers=headers)
    await conn.open()
    if shape == "ga":
        echoed = await conn.send(ga_update(model="gpt-realtime-whisper"))
        assert echoed[0]["session"]["audio"]["input"]["turn_detection"] is None
        refused = await conn.send(ga_update(SERVER_VAD, model="gpt-realtime-whisper"))
    else:
        beta = {"input_audio_transcription": {"model": "gpt-realtime-whisper"}}
        echoed = await conn.send({"type": "transcription_session.update", "session": beta})
        assert echoed[0]["session"]["turn_detection"] is None
        beta["turn_detection"] = SERVER_VAD
        refused = await conn.send({"type": "transcription_session.update", "session": beta})
    assert refused[0]["error"]["code"] == "invalid_value"
    assert refused[0]["error"]["param"].endswith("turn_detection")
    conforms(refused[0], beta=shape == "beta")
    events = await conn.append(speech(300)) + await conn.send({"type": "input_audio_buffer.commit"})
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == ["Ask."]
    assert conn.recording is not None and conn.recording.vad is not None
    assert conn.recording.vad.pause_s is None


async def test_every_error_is_logged_and_the_session_goes_on() -> None:
    """Each ``error`` event is in the log with its code and both event ids; like OpenAI's,
    an error leaves the socket open and the session as it was (OpenAI's ``error`` event:
    "most errors are recoverable and the session will stay open"): after each one the
    next commit still makes its item."""
    conn = FakeConnection(transcripts=deque(["Still here."]))
    await conn.open()
    await conn.send(ga_update(None))
    bad = [
        ({"type": "response.create", "event_id": "e1"}, "invalid_event"),
        ({"type": "input_audio_buffer.append", "audio": "!!", "event_id": "e2"}, "invalid_base64"),
        ({"type": "input_audio_buffer.commit", "event_id": "e3"}, "input_audio_buffer_commit_empty"),
        ({**ga_update(model="no-such-model"), "event_id": "e4"}, "unknown_model"),
        ({"type": "session.update", "session": {"type": "realtime"}, "event_id": "e5"}, "invalid_value"),
    ]
    errors = []
    with capture_logs() as logs:
        for event, code in bad:
            (error,) = await conn.send(event)
            conforms(error)
            assert (error["error"]["code"], error["error"]["event_id"]) == (code, event["event_id"])
            errors.append(error)
        (not_json,) = await conn.send_raw("{not json")
        errors.append(not_json)
    logged = [e for e in logs if e["event"] == "realtime_error"]
    assert [(e["code"], e["event_id"], e["client_event_id"]) for e in logged] == [
        (e["error"]["code"], e["event_id"], e["error"]["event_id"]) for e in errors
    ]
    assert all(e["log_level"] == "warning" and e["message"] for e in logged)
    events = await conn.append(speech(300)) + await conn.send({"type": "input_audio_buffer.commit"})
    assert [e["transcript"] for e in events if e["type"] == COMPLETED] == ["Still here."]
    assert conn.handler.config.turn_detection is None and conn.handler.config.model == "whisper-1"
