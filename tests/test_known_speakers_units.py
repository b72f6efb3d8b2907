"""Fast tests of known speakers on live streams (issue 17): the names and clips each live
protocol takes (``/ws`` ``start_real_recording``, the Realtime session's transcription
object) are checked the same way and refused in the protocol's own shape, and the
Realtime ``completed`` event carries the label."""

from __future__ import annotations

import base64
import json

import pytest

from gateway import events
from gateway.realtime.config import ConfigError, TranscriptionConfig, apply_ga_update
from gateway.renderers.realtime import RealtimeRenderer
from gateway.session import _known_speakers
from shared import protocol
from shared.errors import ErrorCode
from shared.protocol import ProtocolError

CLIP = b"RIFF" + bytes(300_000)  # a clip far over the other fields' 64-character limit
URL = "data:audio/wav;base64," + base64.b64encode(CLIP).decode()


def _start(**fields: object) -> protocol.StartRecording:
    msg = protocol.parse_client_message(json.dumps({"command": "start_real_recording", **fields}))
    assert isinstance(msg, protocol.StartRecording)
    return msg


def test_ws_start_takes_known_speakers_with_diarize() -> None:
    msg = _start(diarize=True, known_speaker_names=["agent"], known_speaker_references=[URL])
    assert _known_speakers(msg) == [("agent", CLIP)]
    assert _known_speakers(_start(diarize=True)) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"known_speaker_names": ["agent"], "known_speaker_references": [URL]},  # no diarize
        {"diarize": True, "known_speaker_names": ["a", "b"], "known_speaker_references": [URL]},
        {"diarize": True, "known_speaker_names": ["a"], "known_speaker_references": [URL, URL]},
        {"diarize": True, "known_speaker_names": ["a"], "known_speaker_references": ["https://x/y.wav"]},
        {"diarize": True, "known_speaker_names": ["a", "a"], "known_speaker_references": [URL, URL]},
        {"diarize": True, "known_speaker_names": list("abcde"), "known_speaker_references": [URL] * 5},
    ],
)
def test_ws_start_refuses_bad_known_speakers_as_invalid_field(fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as err:
        _known_speakers(_start(**fields))
    assert err.value.code == ErrorCode.INVALID_FIELD and "speaker" in err.value.message


def test_ws_start_still_bounds_its_short_fields() -> None:
    with pytest.raises(ProtocolError) as err:
        _start(format="x" * 65)
    assert err.value.code == ErrorCode.INVALID_FIELD


def _transcription(**fields: object) -> dict[str, object]:
    return {"type": "transcription", "audio": {"input": {"transcription": fields}}}


def test_realtime_diarize_model_and_known_speakers() -> None:
    config = TranscriptionConfig(model="whisper-1")
    assert not config.diarize
    updated = apply_ga_update(
        config,
        _transcription(
            model="gpt-4o-transcribe-diarize", known_speaker_names=["agent"], known_speaker_references=[URL]
        ),
        "tiny.en",
    )
    assert updated.diarize and updated.known_speakers == (("agent", CLIP),)
    assert updated.served_model("tiny.en") == "tiny.en"
    with pytest.raises(ConfigError) as err:  # known speakers need the diarizing model
        apply_ga_update(
            config, _transcription(known_speaker_names=["a"], known_speaker_references=[URL]), "tiny.en"
        )
    assert err.value.param == "session.audio.input.transcription.known_speaker_names"
    with pytest.raises(ConfigError) as err:
        apply_ga_update(
            config,
            _transcription(
                model="gpt-4o-transcribe-diarize", known_speaker_names=["a"], known_speaker_references=[]
            ),
            "tiny.en",
        )
    assert (err.value.code, err.value.param) == (
        "invalid_value",
        "session.audio.input.transcription.known_speaker_names",
    )


def test_realtime_completed_carries_the_speaker_when_labelled() -> None:
    renderer = RealtimeRenderer(server_vad=lambda: False)
    message = protocol.transcript(
        "Ask not.",
        final=True,
        utterance_id="s-u0",
        language="en",
        source="real_microphone",
        start=0.0,
        end=1.5,
    )
    labelled = renderer.render(events.FinalText(0, "s-u0", {**message, "speaker": "agent"}))
    plain = renderer.render(events.FinalText(1, "s-u1", {**message, "utterance_id": "s-u1"}))
    completed = [m for m in labelled + plain if m["type"].endswith(".completed")]
    assert completed[0]["speaker"] == "agent" and "speaker" not in completed[1]
