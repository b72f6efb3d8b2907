"""diarized_json rendering and the speaker form fields, judged by the openai SDK's own type."""

from __future__ import annotations

import base64

import pytest
from openai.types.audio import TranscriptionDiarized

from gateway.openai_errors import OpenAIError
from gateway.renderers.diarized import check_chunking_strategy, parse_speaker_fields, render_diarized_json
from shared.speakers.references import reference_problem


def test_sdk_type_parses_the_rendering() -> None:
    body = render_diarized_json(
        [(0.0, 2.0, " Hello there.", "agent"), (2.1, 4.0, " Hi.", "A"), (4.2, 6.0, " Bye.", "agent")],
        duration_s=6.0,
    )
    parsed = TranscriptionDiarized.model_validate(body)
    assert [s.speaker for s in parsed.segments] == ["agent", "A", "agent"]
    assert [s.id for s in parsed.segments] == ["seg_0", "seg_1", "seg_2"]
    assert parsed.text == "Hello there. Hi. Bye."
    assert parsed.segments[0].type == "transcript.text.segment"


def _url(data: bytes = b"RIFF....WAVE") -> str:
    return "data:audio/wav;base64," + base64.b64encode(data).decode()


def test_speaker_fields_parse() -> None:
    req = parse_speaker_fields(["agent"], [_url()], "1", "3")
    assert req.known_names == ["agent"] and req.references == [b"RIFF....WAVE"]
    assert (req.min_speakers, req.max_speakers) == (1, 3)


@pytest.mark.parametrize(
    ("names", "refs", "lo", "hi", "param"),
    [
        (["a"], [_url(), _url()], None, None, "known_speaker_references"),
        (["a", "b"], [_url()], None, None, "known_speaker_names"),
        (["a"], ["https://example.com/x.wav"], None, None, "known_speaker_references"),
        (["a"], ["data:audio/wav;base64,@@@"], None, None, "known_speaker_references"),
        (["a"], ["data:text/plain;base64,aGk="], None, None, "known_speaker_references"),
        ([], [], "0", None, "min_speakers"),
        ([], [], None, "many", "max_speakers"),
        ([], [], "3", "2", "min_speakers"),
    ],
)
def test_bad_speaker_fields_get_openai_errors(
    names: list[str], refs: list[str], lo: str | None, hi: str | None, param: str
) -> None:
    with pytest.raises(OpenAIError) as err:
        parse_speaker_fields(names, refs, lo, hi)
    assert err.value.status == 400 and err.value.param == param and err.value.code == "invalid_value"


def test_reference_clip_length_limits() -> None:
    assert "1.2 to 10 s" in (reference_problem(0, 0.5) or "")
    assert reference_problem(1, 12.0) is not None
    assert reference_problem(0, 3.0) is None
    assert "0.2 s of speech" in (reference_problem(2, 3.0, speech_seconds=0.2) or "")
    assert reference_problem(0, 3.0, speech_seconds=2.5) is None


@pytest.mark.parametrize("value", ["auto", '{"type": "server_vad", "threshold": 0.5}', None])
def test_chunking_strategy_accepted(value: str | None) -> None:
    check_chunking_strategy(value, None)
    check_chunking_strategy(None, "server_vad")


@pytest.mark.parametrize(("value", "vad_type"), [("sometimes", None), ('{"type": "x"}', None), (None, "y")])
def test_chunking_strategy_refused(value: str | None, vad_type: str | None) -> None:
    with pytest.raises(OpenAIError) as err:
        check_chunking_strategy(value, vad_type)
    assert err.value.param == "chunking_strategy"
