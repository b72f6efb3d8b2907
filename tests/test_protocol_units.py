"""Deepgram's and WhisperLive's protocols in-process: their option parsers, their
renderers of the typed events, the raw PCM formats they stream, and the API key in
Deepgram's ``Authorization: Token`` header. Nothing is started."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from audio_service.pcm_input import RawToPcm
from gateway import events
from gateway.auth import bearer_token, protected
from gateway.deepgram.errors import DeepgramError, close_code_for, error_frame
from gateway.deepgram.options import parse_options
from gateway.deepgram.prerecorded import paragraphs, response_body
from gateway.renderers.deepgram import DeepgramRenderer
from gateway.renderers.whisperlive import WhisperLiveRenderer
from gateway.whisperlive import options as wl_options
from gateway.whisperlive.session import WhisperLiveProtocol
from shared import protocol
from shared.audio_format import RawSpec, parse_raw_format, raw_format
from shared.errors import ErrorCode
from shared.protocol import ProtocolError


def transcript(text: str, start: float, end: float, *, final: bool, **fields: Any) -> dict[str, Any]:
    return protocol.transcript(
        text,
        final=final,
        utterance_id="s-u0",
        language="en",
        source="real_microphone",
        start=start,
        end=end,
        **fields,
    )


# --- raw formats -------------------------------------------------------------------------


def test_raw_format_names_round_trip_and_keep_the_realtime_names() -> None:
    assert parse_raw_format("pcm16_24000") == RawSpec("pcm16", 24000)
    assert parse_raw_format("g711_ulaw") == RawSpec("g711_ulaw", 8000)
    assert parse_raw_format(raw_format("pcm16", 44100, 2)) == RawSpec("pcm16", 44100, 2)
    assert parse_raw_format(raw_format("f32", 16000)) == RawSpec("f32", 16000)
    for name in ("webm", None, "pcm16_99", "pcm16_16000_9ch", "f64_16000", "pcm16_999999"):
        assert parse_raw_format(name) is None
    with pytest.raises(ValueError):
        raw_format("pcm16", 100)


def tone(rate: int, hz: float = 440, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * hz * t)


def test_float32_stereo_and_odd_rates_become_16k_mono_across_chunk_boundaries() -> None:
    stereo = np.stack([tone(44100, 440), tone(44100, 620)], axis=1).astype("<f4")
    data = stereo.tobytes()
    converter = RawToPcm(raw_format("f32", 44100, 2))
    # Chunks that cut frames (and samples) in half are put together again.
    out = np.concatenate([converter.convert(data[i : i + 1001]) for i in range(0, len(data), 1001)])
    out = np.concatenate([out, converter.finish()])
    assert abs(len(out) - 16000) <= 32
    expected = ((tone(16000, 440) + tone(16000, 620)) / 2 * 32767).astype(np.int16)  # mixed down
    n = min(len(out), len(expected)) - 200
    assert np.corrcoef(out[100:n], expected[100:n])[0, 1] > 0.99
    whole = RawToPcm(raw_format("f32", 44100, 2)).convert(data)
    assert np.array_equal(out[: len(whole)], whole)


def test_float32_out_of_range_and_nan_samples_are_clipped() -> None:
    converter = RawToPcm(raw_format("f32", 16000))
    out = converter.convert(np.array([np.nan, 5.0, -5.0] * 2000, dtype="<f4").tobytes())
    assert out.dtype == np.int16 and np.all(np.abs(out.astype(int)) <= 32767)


# --- Deepgram ------------------------------------------------------------------------------


def test_deepgram_options_map_onto_the_service() -> None:
    opts = parse_options(
        {
            "encoding": "linear16",
            "sample_rate": "48000",
            "channels": "2",
            "language": "en-US",
            "model": "nova-3",
            "interim_results": "true",
            "endpointing": "10",
            "utterance_end_ms": "1000",
            "vad_events": "true",
            "diarize": "true",  # known to Deepgram, ignored here
            "whatever": "x",  # unknown: accepted and ignored
        },
        live=True,
    )
    assert opts.format == "pcm16_48000_2ch" and opts.language == "en" and opts.model is None
    assert opts.interim_results and opts.vad_events and opts.utterance_end_ms == 1000
    assert opts.endpointing_ms == 200  # Deepgram's 10 ms default would cut at every breath
    assert parse_options({"model": "tiny.en", "language": "multi"}, live=True).model == "tiny.en"
    assert parse_options({"encoding": "opus"}, live=True).format == "ogg"
    assert parse_options({}, live=True).format is None
    assert parse_options({"endpointing": "false"}, live=True).endpointing_ms is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"encoding": "linear16"}, "sample_rate"),
        ({"encoding": "speex", "sample_rate": "16000"}, "encoding"),
        ({"encoding": "linear16", "sample_rate": "lots"}, "sample_rate"),
        ({"encoding": "linear16", "sample_rate": "16000", "channels": "99"}, "channels"),
        ({"interim_results": "maybe"}, "interim_results"),
        ({"utterance_end_ms": "-5"}, "utterance_end_ms"),
    ],
)
def test_deepgram_bad_values_are_refused_naming_the_parameter(params: dict[str, str], named: str) -> None:
    with pytest.raises(DeepgramError) as raised:
        parse_options(params, live=True)
    assert raised.value.status == 400 and named in raised.value.message
    body = raised.value.body("r-1")
    assert body == {"err_code": "INVALID_FIELD", "err_msg": raised.value.message, "request_id": "r-1"}


def test_deepgram_error_statuses_and_close_codes_come_from_the_error_table() -> None:
    assert DeepgramError(ErrorCode.INVALID_AUDIO, "x").status == 415
    assert DeepgramError(ErrorCode.NO_WORKERS, "x").status == 503
    assert close_code_for(ErrorCode.INVALID_AUDIO) == 1008
    assert close_code_for(ErrorCode.BUSY) == 1013
    assert close_code_for(ErrorCode.AUDIO_SERVICE_UNAVAILABLE) == 1011
    assert error_frame("busy", "full", retry_after_s=3) == {
        "type": "Error",
        "variant": "BUSY",
        "description": "full",
        "code": "busy",
        "retry_after_s": 3,
    }


def test_deepgram_renderer_interim_then_final_windows() -> None:
    r = DeepgramRenderer(
        parse_options({"interim_results": "true", "utterance_end_ms": "1000"}, live=True), "tiny.en"
    )
    partial = r.render(events.PartialText(0, "s-u0", transcript("ask not what", 1.0, 2.0, final=False)))
    segs = [{"avg_logprob": -0.1}]
    final = r.render(
        events.FinalText(
            0, "s-u0", transcript("Ask not, what your country.", 1.0, 3.0, final=True, segments=segs)
        )
    )
    assert [m["type"] for m in partial] == ["Results"] and partial[0]["is_final"] is False
    results, end = final
    assert results["is_final"] and results["speech_final"] and "from_finalize" not in results
    alt = results["channel"]["alternatives"][0]
    assert alt["transcript"] == "ask not what your country"  # punctuate off: Deepgram's raw words
    assert [w["word"] for w in alt["words"]] == ["ask", "not", "what", "your", "country"]
    assert alt["words"][0]["start"] == 1.0 and alt["words"][-1]["end"] == pytest.approx(3.0)
    assert 0.9 < alt["confidence"] < 0.91
    assert end == {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": alt["words"][-1]["end"]}
    # A later window never starts before the last final's end, even if its times say so.
    r.finalize_pending = 1
    (after,) = r.render(events.FinalText(1, "s-u1", transcript("Next.", 2.5, 4.0, final=True)))[:1]
    assert after["start"] == 3.0 and after["from_finalize"] is True and after["speech_final"] is False
    stopped = r.render(events.RecordingStopped("tiny.en", 2))
    assert stopped[0]["type"] == "Metadata" and stopped[0]["duration"] == 4.0
    pcm = DeepgramRenderer(
        parse_options({"encoding": "linear16", "sample_rate": "8000"}, live=True), "tiny.en"
    )
    pcm.fed(bytes(8000 * 2 * 3))  # 3 s of audio, no final yet
    assert pcm.metadata()["duration"] == 3.0


def test_deepgram_renderer_without_interim_results_or_vad_events_says_less() -> None:
    r = DeepgramRenderer(parse_options({"punctuate": "true"}, live=True), "tiny.en")
    assert r.render(events.PartialText(0, "s-u0", transcript("ask", 0, 1, final=False))) == []
    assert r.render(events.SpeechStarted(0, 300)) == []
    (final,) = r.render(events.FinalText(0, "s-u0", transcript("Ask not.", 0, 1, final=True)))
    assert final["channel"]["alternatives"][0]["transcript"] == "Ask not."
    assert final["channel"]["alternatives"][0]["words"][1]["punctuated_word"] == "not."
    vad = DeepgramRenderer(parse_options({"vad_events": "true"}, live=True), "tiny.en")
    assert vad.render(events.SpeechStarted(0, 1250)) == [
        {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 1.25}
    ]
    (failed,) = r.render(events.UtteranceFailed(1, "s-u1", "timeout", "No result arrived in time"))
    assert failed["type"] == "Error" and failed["variant"] == "TIMEOUT"
    assert r.render(events.RecordingResumed("x", "tiny.en", 0, 0)) == []  # no counterpart


def test_deepgram_prerecorded_body_with_word_times_utterances_and_paragraphs() -> None:
    pieces = [
        {
            "transcript": "And so my fellow Americans. Ask not.",
            "start": 0.0,
            "end": 4.0,
            "segments": [
                {
                    "start": 0.0,
                    "end": 2.0,
                    "text": "And so my fellow Americans.",
                    "avg_logprob": -0.2,
                    "words": [
                        {"word": w, "start": i * 0.4, "end": i * 0.4 + 0.3}
                        for i, w in enumerate(["And", "so", "my", "fellow", "Americans."])
                    ],
                },
                {
                    "start": 3.6,
                    "end": 4.0,
                    "text": "Ask not.",
                    "avg_logprob": -0.3,
                    "words": [
                        {"word": "Ask", "start": 3.6, "end": 3.8},
                        {"word": "not.", "start": 3.8, "end": 4.0},
                    ],
                },
            ],
        }
    ]
    opts = parse_options({"smart_format": "true", "utterances": "true", "paragraphs": "true"}, live=False)
    body = response_body(pieces, opts, "tiny.en", "r-1", 4.0, "abc")
    alt = body["results"]["channels"][0]["alternatives"][0]
    assert alt["transcript"] == "And so my fellow Americans. Ask not."
    assert [w["word"] for w in alt["words"]][-2:] == ["ask", "not"] and alt["words"][-1][
        "punctuated_word"
    ] == "not."
    assert alt["words"][3]["start"] == 1.2
    assert [u["transcript"] for u in body["results"]["utterances"]] == [
        "And so my fellow Americans.",
        "Ask not.",
    ]
    assert len(alt["paragraphs"]["paragraphs"]) == 2  # the 1.6 s pause starts a new one
    assert body["metadata"]["duration"] == 4.0 and body["metadata"]["request_id"] == "r-1"
    plain = response_body(pieces, parse_options({}, live=False), "tiny.en", "r-2", 4.0, "abc")
    assert (
        "utterances" not in plain["results"]
        and "paragraphs" not in plain["results"]["channels"][0]["alternatives"][0]
    )
    assert paragraphs([])["paragraphs"] == []


def test_deepgram_token_scheme_carries_the_key() -> None:
    assert bearer_token([(b"authorization", b"Token abc")]) == "abc"
    assert bearer_token([(b"Authorization", b"Bearer abc")]) == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert protected("/", "websocket") and not protected("/", "http")


# --- WhisperLive ---------------------------------------------------------------------------


def test_whisperlive_options_as_its_client_sends_them() -> None:
    sent = (
        '{"uid": "u-1", "language": "en", "task": "transcribe", "model": "small", "use_vad": true,'
        ' "send_last_n_segments": 10, "no_speech_thresh": 0.45, "clip_audio": false,'
        ' "same_output_threshold": 10, "enable_translation": false, "target_language": "fr",'
        ' "hotwords": null, "enable_diarization": false, "max_speakers": 10, "known_speakers": [],'
        ' "word_timestamps": false, "initial_prompt": null, "vad_parameters": null}'
    )
    opts = wl_options.parse_options(sent)
    assert (opts.uid, opts.language, opts.task, opts.format, opts.send_last_n) == (
        "u-1",
        "en",
        "transcribe",
        "f32_16000",
        10,
    )
    assert wl_options.parse_options('{"uid": "u", "audio_format": "int16"}').format == "pcm16_16000"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{nope", ErrorCode.INVALID_JSON),
        ("[1]", ErrorCode.INVALID_MESSAGE),
        ('{"language": "en"}', ErrorCode.MISSING_FIELD),
        ('{"uid": "u", "task": "summarise"}', ErrorCode.UNSUPPORTED_TASK),
        ('{"uid": "u", "audio_format": "mp3"}', ErrorCode.INVALID_FIELD),
        ('{"uid": "u", "send_last_n_segments": -1}', ErrorCode.INVALID_FIELD),
    ],
)
def test_whisperlive_bad_options(text: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as raised:
        wl_options.parse_options(text)
    assert raised.value.code == code
    assert wl_options.uid_of('{"uid": "u-9", "task": 3}') == "u-9" and wl_options.uid_of("{") == ""


def test_whisperlive_renderer_segments_as_its_client_reads_them() -> None:
    r = WhisperLiveRenderer(uid="u-1", send_last_n=2, report_language=True)
    assert r.ready() == {"uid": "u-1", "message": "SERVER_READY", "backend": "faster_whisper"}
    (partial,) = r.render(events.PartialText(0, "s-u0", transcript("And so", 0.02, 1.0, final=False)))
    assert partial == {
        "uid": "u-1",
        "segments": [{"start": "0.020", "end": "1.000", "text": "And so", "completed": False}],
    }
    language, settling, final = r.render(
        events.FinalText(
            0,
            "s-u0",
            transcript("And so my fellow Americans.", 0.02, 2.4, final=True, language_probability=0.9),
        )
    )
    assert language == {"uid": "u-1", "language": "en", "language_prob": 0.9}
    assert settling["segments"][-1] == {**final["segments"][-1], "completed": False}
    assert final["segments"] == [
        {"start": "0.020", "end": "2.400", "text": "And so my fellow Americans.", "completed": True}
    ]
    assert "language" not in final  # the client would read a segments message as detection
    for i, (a, b) in enumerate([(3.0, 4.5), (4.0, 7.0)], start=1):  # the second overlaps: clamped
        _, msg = r.render(events.FinalText(i, f"s-u{i}", transcript(f"Part {i}.", a, b, final=True)))
    assert [s["text"] for s in msg["segments"]] == ["Part 1.", "Part 2."]  # the last two only
    assert msg["segments"][1]["start"] == "4.500"
    (warning,) = r.render(events.UtteranceFailed(3, "s-u3", "timeout", "No result arrived in time"))
    assert warning == {"uid": "u-1", "status": "WARNING", "message": "timeout: No result arrived in time"}
    (error,) = r.render(events.RecordingFailed("invalid_audio", "bad"))
    assert error["status"] == "ERROR"
    assert r.render(events.RecordingStopped("tiny.en", 3)) == [{"uid": "u-1", "message": "DISCONNECT"}]
    assert r.render(events.SpeechStarted(0, 10)) == []


class FakeConnection:
    """What WhisperLiveProtocol uses of a Connection, for its admission answers."""

    def __init__(self, refusal: ProtocolError) -> None:
        self.refusal = refusal
        self.pushed: list[dict[str, Any]] = []
        self.closed: list[int] = []
        self.settings = type("S", (), {"model": "tiny.en", "max_audio_bytes": 1 << 20})()

    async def start_recording(self, **options: Any) -> None:
        raise self.refusal

    def push(self, message: dict[str, Any]) -> None:
        self.pushed.append(message)

    def spawn_close(self, code: int) -> None:
        self.closed.append(code)


def test_whisperlive_busy_admission_is_wait_in_minutes_and_other_refusals_are_error() -> None:
    busy = ProtocolError(ErrorCode.BUSY, "The pool is full")
    busy.retry_after_s = 90  # type: ignore[attr-defined]  # what admission adds to its refusal
    conn = FakeConnection(busy)
    asyncio.run(WhisperLiveProtocol(conn).on_text('{"uid": "u-1", "language": "en"}'))  # type: ignore[arg-type]
    assert conn.pushed == [{"uid": "u-1", "status": "WAIT", "message": 1.5}] and conn.closed == [1000]
    conn = FakeConnection(ProtocolError(ErrorCode.AUDIO_SERVICE_UNAVAILABLE, "away"))
    asyncio.run(WhisperLiveProtocol(conn).on_text('{"uid": "u-2"}'))  # type: ignore[arg-type]
    assert conn.pushed == [{"uid": "u-2", "status": "ERROR", "message": "audio_service_unavailable: away"}]


def test_deepgram_sdks_key_placements_pass_the_api_key_check() -> None:
    """``Authorization: Token <key>`` (the SDKs' header) and ``Sec-WebSocket-Protocol:
    token, <key>`` (Deepgram's browser form) open ``/v1/listen``; a wrong key does not."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    from gateway.auth import APIKeyMiddleware

    async def listen(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def listen_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("ok")
        await websocket.close()

    app = Starlette(
        routes=[Route("/v1/listen", listen, methods=["POST"]), WebSocketRoute("/v1/listen", listen_ws)]
    )
    client = TestClient(APIKeyMiddleware(app, api_key="k-1"))
    assert client.post("/v1/listen", headers={"Authorization": "Token k-1"}).status_code == 200
    assert client.post("/v1/listen", headers={"Authorization": "Token nope"}).status_code == 401
    with client.websocket_connect("/v1/listen", headers={"Authorization": "Token k-1"}) as ws:
        assert ws.receive_text() == "ok"
    with client.websocket_connect("/v1/listen", subprotocols=["token", "k-1"]) as ws:
        assert ws.receive_text() == "ok" and ws.accepted_subprotocol == "token"  # never the key
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/v1/listen", subprotocols=["token", "x"]),
    ):
        pass
