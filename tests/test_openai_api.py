"""The OpenAI-compatible API through the official ``openai`` SDK, unchanged client code:
real stack, real tiny.en, real speech, WER against the references."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import openai
import pytest
import srt
import webvtt
from openai import OpenAI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import API_KEY, Stack
from tests.helpers import fixture_bytes, manifest, recv_json, send_json, to_plain_mp4, wer

#: Every test here runs against a stack with an API key (api_stack): the slow tier.
pytestmark = pytest.mark.slow

JFK_S = 11.0


@pytest.fixture(scope="module")
def client(api_stack: Stack) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{api_stack.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=180) as c:
        yield c


def _jfk() -> tuple[str, bytes]:
    return ("jfk.flac", fixture_bytes("jfk"))


def test_transcription_json(client: OpenAI) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=_jfk())
    assert wer(manifest()["jfk"]["reference"], result.text) <= 0.10, result.text
    assert result.usage is not None and result.usage.type == "duration" and result.usage.seconds == 11


def test_newer_openai_model_names_are_served_by_the_default_model(client: OpenAI) -> None:
    name = "gpt-4o-mini-transcribe"
    text = client.audio.transcriptions.create(model=name, file=_jfk(), response_format="text")
    assert wer(manifest()["jfk"]["reference"], text) <= 0.10, text


def test_m4a_as_phones_record_it(client: OpenAI) -> None:
    """AAC in an MP4 whose index follows the samples: the commonest upload from a phone."""
    memo = ("memo.m4a", to_plain_mp4(fixture_bytes("jfk")))
    result = client.audio.transcriptions.create(model="whisper-1", file=memo)
    assert wer(manifest()["jfk"]["reference"], result.text) <= 0.10, result.text


def test_text_format_and_service_model_name(client: OpenAI) -> None:
    text = client.audio.transcriptions.create(model="tiny.en", file=_jfk(), response_format="text")
    assert isinstance(text, str)
    assert wer(manifest()["jfk"]["reference"], text) <= 0.10, text


def test_srt_parses_with_cues_inside_the_clip(client: OpenAI) -> None:
    body = client.audio.transcriptions.create(model="whisper-1", file=_jfk(), response_format="srt")
    cues = list(srt.parse(body, ignore_errors=False))
    assert cues, body
    assert [c.index for c in cues] == list(range(1, len(cues) + 1))
    for cue in cues:
        assert 0.0 <= cue.start.total_seconds() < cue.end.total_seconds() <= JFK_S, body
    assert wer(manifest()["jfk"]["reference"], " ".join(c.content for c in cues)) <= 0.10


def test_vtt_parses_with_cues_inside_the_clip(client: OpenAI) -> None:
    body = client.audio.transcriptions.create(model="whisper-1", file=_jfk(), response_format="vtt")
    assert body.startswith("WEBVTT\n")
    cues = webvtt.from_string(body, strict=True).captions
    assert cues, body
    for cue in cues:
        assert 0.0 <= cue.start_in_seconds < cue.end_in_seconds <= JFK_S, body
    assert wer(manifest()["jfk"]["reference"], " ".join(c.text for c in cues)) <= 0.10


def test_verbose_json_segments_words_and_temperature(client: OpenAI) -> None:
    """Word timings and the temperature reach the model: the segments report what it used."""
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=_jfk(),
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
        temperature=0.4,
        language="en",
    )
    assert result.language == "en" and result.duration == pytest.approx(JFK_S, abs=0.2)
    assert wer(manifest()["jfk"]["reference"], result.text) <= 0.15, result.text
    segments = result.segments or []
    assert segments and all(s.temperature == pytest.approx(0.4) for s in segments)
    for earlier, later in itertools.pairwise(segments):
        assert earlier.start < later.start and earlier.end <= later.end
    assert all(0.0 <= s.start < s.end <= JFK_S for s in segments)
    words = result.words or []
    assert len(words) >= 15
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert words[-1].end <= JFK_S and "country" in words[-1].word.lower()


def test_prompt_reaches_the_model(client: OpenAI) -> None:
    """Whisper continues the prompt's style: an upper-case prompt gives upper-case text."""
    plain = client.audio.transcriptions.create(model="whisper-1", file=_jfk()).text
    prompted = client.audio.transcriptions.create(
        model="whisper-1", file=_jfk(), prompt="AND SO MY FELLOW AMERICANS, ASK NOT"
    ).text
    assert plain != plain.upper() and prompted == prompted.upper(), (plain, prompted)
    assert wer(manifest()["jfk"]["reference"], prompted) <= 0.10, prompted


def test_verbose_json_without_word_granularity_has_no_words(client: OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=_jfk(), response_format="verbose_json"
    )
    assert result.segments and not result.words


def test_stream_deltas_add_up_to_the_done_text(client: OpenAI) -> None:
    reference = manifest()["osr_us_000_0034"]["reference"]
    audio = ("osr.wav", fixture_bytes("osr_us_000_0034"))
    events = list(client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 3  # announcement + two or more pieces
    assert "".join(d.delta for d in deltas) == done.text
    assert wer(reference, done.text) <= 0.15, done.text
    progress = [d.model_extra["x_progress"] for d in deltas if d.model_extra]
    assert [p["completed"] for p in progress] == list(range(len(progress)))
    assert progress[-1]["completed"] == progress[-1]["pieces"] >= 2


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
def test_translation_on_english_only_model_gives_the_english_text(client: OpenAI) -> None:
    """tiny.en hears only English, and English translated to English is the transcript."""
    result = client.audio.translations.create(model="whisper-1", file=_jfk())
    assert wer(manifest()["jfk"]["reference"], result.text) <= 0.10, result.text


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
def test_translation_of_german_with_multilingual_base(client: OpenAI) -> None:
    audio = ("de.wav", fixture_bytes("thorsten_gt_03"))  # "Europa und Asien … Eurasien bezeichnet"
    result = client.audio.translations.create(model="base", file=audio)
    words = set(result.text.lower().replace(".", " ").replace(",", " ").split())
    assert {"europe", "asia"} <= words, result.text
    assert not words & {"und", "wird", "auch", "als"}, result.text


def test_models_list(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "whisper-1" in ids and "tiny.en" in ids
    assert client.models.retrieve("tiny.en").id == "tiny.en"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# --- authentication ------------------------------------------------------------------------


def test_wrong_key_is_authentication_error(api_stack: Stack) -> None:
    with (
        OpenAI(base_url=f"{api_stack.base_url}/v1", api_key="wrong-key", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        bad.audio.transcriptions.create(model="whisper-1", file=_jfk())
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"


def test_missing_key_is_401_in_openai_shape(api_stack: Stack) -> None:
    response = httpx.post(
        f"{api_stack.base_url}/v1/audio/transcriptions", files={"file": _jfk()}, data={"model": "whisper-1"}
    )
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_api_routes_need_the_key_probes_do_not(api_stack: Stack) -> None:
    base = api_stack.base_url
    assert httpx.get(f"{base}/api/status").status_code == 401
    assert httpx.get(f"{base}/api/status", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.get(f"{base}/health").status_code == 200
    assert httpx.get(f"{base}/").status_code == 200


def test_websocket_needs_the_key(api_stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(api_stack.ws_url).close()
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(f"{api_stack.ws_url}?api_key=wrong").close()
    with connect(f"{api_stack.ws_url}?api_key={API_KEY}") as ws:
        send_json(ws, {"command": "ping"})
        assert recv_json(ws) == {"type": "pong"}
    # A browser cannot set headers, but it can offer subprotocols; the key must not be echoed.
    with connect(api_stack.ws_url, subprotocols=["whisper-appliance", f"bearer.{API_KEY}"]) as ws:
        assert ws.subprotocol == "whisper-appliance"
        send_json(ws, {"command": "ping"})
        assert recv_json(ws) == {"type": "pong"}


# --- bad input: an OpenAI-shaped error with the right status, never a 500 -------------------

TEXT_AS_MP3 = ("notes.mp3", b"This is a shopping list, not an MP3 file.\n" * 40, "audio/mpeg")

BAD_INPUT = {
    "not_multipart": (dict(json={"model": "whisper-1"}), 400, None),
    "no_file": (dict(data={"model": "whisper-1"}, files={"other": ("x.txt", b"x")}), 400, "file"),
    "empty_file": (dict(data={"model": "whisper-1"}, files={"file": ("empty.wav", b"")}), 400, "file"),
    "text_named_mp3": (dict(data={"model": "whisper-1"}, files={"file": TEXT_AS_MP3}), 415, "file"),
    "unknown_response_format": (
        dict(data={"model": "whisper-1", "response_format": "docx"}, files={"file": ("a.flac", b"fLaC")}),
        400,
        "response_format",
    ),
    "unknown_model": (dict(data={"model": "gpt-9"}, files={"file": ("a.flac", b"fLaC")}), 400, "model"),
    "no_model": (dict(data={}, files={"file": ("a.flac", b"fLaC")}), 400, "model"),
    "temperature_out_of_range": (
        dict(data={"model": "whisper-1", "temperature": "7"}, files={"file": ("a.flac", b"fLaC")}),
        400,
        "temperature",
    ),
    "bad_granularity": (
        dict(
            data={"model": "whisper-1", "timestamp_granularities[]": "char"},
            files={"file": ("a.flac", b"fLaC")},
        ),
        400,
        "timestamp_granularities",
    ),
    "german_on_english_only_model": (
        dict(data={"model": "tiny.en", "language": "de"}, files={"file": ("a.flac", b"fLaC")}),
        400,
        "language",
    ),
    "too_large": (
        dict(data={"model": "whisper-1"}, files={"file": ("big.wav", b"RIFF" + b"\0" * (11 * 2**20))}),
        413,
        "file",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_gets_openai_error(api_stack: Stack, case: str) -> None:
    kwargs, status, param = BAD_INPUT[case]
    response = httpx.post(
        f"{api_stack.base_url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
        **kwargs,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"]
    assert len(error["message"]) > 10


def test_text_named_mp3_via_sdk_is_a_clear_error(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=TEXT_AS_MP3[:2])
    assert caught.value.status_code == 415 and "decode" in caught.value.message.lower()
