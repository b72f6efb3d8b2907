"""Deepgram's ``/v1/listen`` driven by the official ``deepgram-sdk`` against the whole
stack (``whisper-appliance up``: real VAD, real workers, tiny.en on real speech): live
over the WebSocket, pre-recorded over HTTP, and bad input answered in Deepgram's shapes
while another stream is being served."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from deepgram import AsyncDeepgramClient, DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment

from tests.conftest import Stack
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, wer

pytestmark = pytest.mark.slow

RATE = 16000
CHUNK_S = 0.1
JFK = manifest()["jfk"]["reference"]


def pcm16(fixture_id: str, rate: int = RATE) -> bytes:
    return ffmpeg_convert(fixture_bytes(fixture_id), "-ac", "1", "-ar", str(rate), "-f", "s16le")


def environment(stack: Stack) -> DeepgramClientEnvironment:
    ws = stack.base_url.replace("http://", "ws://")
    return DeepgramClientEnvironment(base=stack.base_url, production=ws, agent=ws, agent_rest=stack.base_url)


@dataclass
class LiveRun:
    messages: list[tuple[float, Any]] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[Any]:
        return [m for _, m in self.messages if getattr(m, "type", None) == kind]

    def results(self, *, final: bool) -> list[Any]:
        return [m for m in self.of("Results") if bool(m.is_final) is final]

    def settled_text(self) -> str:
        return " ".join(m.channel.alternatives[0].transcript for m in self.results(final=True)).strip()

    def first_at(self, predicate: Any) -> float:
        return next(t for t, m in self.messages if predicate(m))


async def stream_live(
    stack: Stack, pcm: bytes, *, rate: int = RATE, finalize: bool = False, **params: Any
) -> LiveRun:
    """Stream PCM in real time through the SDK's async live client, then CloseStream and
    read until the server closes."""
    client = AsyncDeepgramClient(api_key="unused-key", environment=environment(stack))
    run = LiveRun()
    options = {"model": "nova-3", "encoding": "linear16", "sample_rate": str(rate), **params}
    async with client.listen.v1.connect(**options) as conn:

        async def read() -> None:
            try:
                async for message in conn:
                    run.messages.append((time.monotonic(), message))
            except websockets.ConnectionClosed as exc:
                run.close_code = exc.rcvd.code if exc.rcvd else None
            else:
                socket = conn._websocket
                run.close_code = socket.close_code

        reader = asyncio.create_task(read())
        step = int(rate * CHUNK_S) * 2
        started = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), step)):
            await conn.send_media(pcm[at : at + step])
            await asyncio.sleep(max(0.0, started + (i + 1) * CHUNK_S - time.monotonic()))
        if finalize:
            await conn.send_finalize()
        await conn.send_keep_alive()
        await conn.send_close_stream()
        await asyncio.wait_for(reader, 90)
    return run


def test_live_sdk_streams_jfk_with_interim_results_and_closes_cleanly(stack: Stack) -> None:
    run = asyncio.run(
        stream_live(
            stack,
            pcm16("jfk"),
            interim_results="true",
            punctuate="true",
            vad_events="true",
            utterance_end_ms="1000",
            smart_format="true",
            diarize="false",  # a parameter this server ignores
            # Unknown parameters are accepted and ignored, as Deepgram documents.
            request_options={"additional_query_parameters": {"some_future_option": "x"}},
        )
    )
    finals = run.results(final=True)
    interims = run.results(final=False)
    assert finals, run.messages
    assert wer(JFK, run.settled_text()) <= 0.10, run.settled_text()
    assert interims, "no interim results"
    assert run.first_at(lambda m: getattr(m, "is_final", None) is False) < run.first_at(
        lambda m: getattr(m, "is_final", None) is True
    )
    assert run.of("SpeechStarted"), "vad_events=true but no SpeechStarted"
    assert run.of("UtteranceEnd"), "utterance_end_ms set but no UtteranceEnd"
    # Windows follow each other on the audio's timeline; words carry times inside them.
    ends = [round(r.start + r.duration, 3) for r in finals]
    assert all(b.start >= a for a, b in zip(ends, finals[1:], strict=False))
    for r in finals:
        alt = r.channel.alternatives[0]
        assert alt.words and 0 < alt.confidence <= 1
        assert r.start - 0.01 <= alt.words[0].start <= alt.words[-1].end <= r.start + r.duration + 0.01
        assert alt.words[0].punctuated_word
        assert r.speech_final is True
    assert r.metadata.request_id and r.metadata.model_info.name
    # CloseStream: Metadata after the last result, then a normal close.
    kinds = [getattr(m, "type", None) for _, m in run.messages]
    assert kinds[-1] == "Metadata", kinds
    assert run.of("Metadata")[0].duration > 10
    assert run.close_code == 1000
    assert not run.of("Error"), run.of("Error")


def test_live_sdk_without_interim_results_or_punctuation(stack: Stack) -> None:
    """Only finals; ``punctuate`` off gives Deepgram's raw lower-case words; 44.1 kHz
    (a microphone's rate) is resampled on the way in."""
    run = asyncio.run(stream_live(stack, pcm16("jfk", 44100), rate=44100, finalize=True))
    assert not run.results(final=False)
    text = run.settled_text()
    assert wer(JFK, text) <= 0.10, text
    assert text == text.lower() and "," not in text and "." not in text
    assert run.close_code == 1000


def test_prerecorded_sdk_file_with_utterances_and_paragraphs(stack: Stack) -> None:
    client = DeepgramClient(api_key="unused-key", environment=environment(stack))
    response = client.listen.v1.media.transcribe_file(
        request=fixture_bytes("jfk"), model="nova-3", smart_format=True, utterances=True, paragraphs=True
    )
    alt = response.results.channels[0].alternatives[0]
    assert wer(JFK, alt.transcript) <= 0.10, alt.transcript
    assert alt.words and alt.words[0].start < alt.words[-1].end <= 11.1
    assert [w.start for w in alt.words] == sorted(w.start for w in alt.words)
    utterances = response.results.utterances
    assert utterances and wer(JFK, " ".join(u.transcript for u in utterances)) <= 0.1
    assert alt.paragraphs and alt.paragraphs.paragraphs
    assert 10.5 < response.metadata.duration < 11.5
    assert response.metadata.request_id and response.metadata.models


def test_prerecorded_refusals_in_deepgrams_shape(stack: Stack) -> None:
    client = DeepgramClient(api_key="unused-key", environment=environment(stack))
    with pytest.raises(ApiError) as raised:
        client.listen.v1.media.transcribe_file(request=b"this is not audio at all" * 100, model="nova-3")
    assert raised.value.status_code == 415
    body = raised.value.body
    assert body["err_code"] == "INVALID_AUDIO" and body["err_msg"] and body["request_id"]
    with pytest.raises(ApiError) as raised:
        client.listen.v1.media.transcribe_url(url="https://example.com/audio.wav", model="nova-3")
    assert raised.value.status_code == 400 and "URL" in raised.value.body["err_msg"]
    bad = httpx.post(f"{stack.base_url}/v1/listen?punctuate=maybe", content=fixture_bytes("jfk"), timeout=30)
    assert bad.status_code == 400 and "punctuate" in bad.json()["err_msg"]


def test_bad_live_input_gets_deepgram_errors_while_another_stream_is_served(stack: Stack) -> None:
    async def scenario() -> tuple[LiveRun, list[Any]]:
        good = asyncio.create_task(stream_live(stack, pcm16("jfk"), interim_results="true"))
        await asyncio.sleep(1.0)
        outcomes: list[Any] = []
        ws_base = stack.base_url.replace("http://", "ws://")
        # A bad parameter value: refused at the handshake with HTTP 400 and Deepgram's body.
        with pytest.raises(websockets.InvalidStatus) as raised:
            async with websockets.connect(f"{ws_base}/v1/listen?encoding=linear16&sample_rate=lots"):
                pass
        outcomes.append((raised.value.response.status_code, json.loads(raised.value.response.body)))
        # Through the SDK the same refusal is its ApiError with the status.
        client = AsyncDeepgramClient(api_key="unused-key", environment=environment(stack))
        with pytest.raises(ApiError) as sdk_raised:
            async with client.listen.v1.connect(model="nova-3", encoding="speex", sample_rate="16000"):
                pass
        outcomes.append(sdk_raised.value.status_code)
        # An unknown control message: an Error frame, the stream stays open.
        async with websockets.connect(f"{ws_base}/v1/listen?encoding=linear16&sample_rate=16000") as ws:
            await ws.send(json.dumps({"type": "Dance"}))
            outcomes.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send(json.dumps({"type": "CloseStream"}))
            outcomes.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
        # Audio that no decoder reads (no encoding: ffmpeg probes): Error, then close 1008.
        async with websockets.connect(f"{ws_base}/v1/listen") as ws:
            await ws.send(b"\x00\x01garbage that is not any container" * 200)
            await ws.send(json.dumps({"type": "CloseStream"}))
            frames = []
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            except websockets.ConnectionClosed as exc:
                outcomes.append((frames, exc.rcvd.code if exc.rcvd else None))
        return await good, outcomes

    good, outcomes = asyncio.run(scenario())
    (status, body), sdk_status, unknown, after_unknown, (frames, code) = outcomes
    assert status == 400 and body["err_code"] == "INVALID_FIELD" and "sample_rate" in body["err_msg"]
    assert sdk_status == 400
    assert unknown["type"] == "Error" and unknown["variant"] == "INVALID_MESSAGE" and unknown["description"]
    assert after_unknown == "Metadata"
    assert frames and frames[0]["type"] == "Error" and frames[0]["variant"] == "INVALID_AUDIO", frames
    assert code == 1008
    assert wer(JFK, good.settled_text()) <= 0.10 and good.close_code == 1000
