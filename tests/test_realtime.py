"""OpenAI Realtime transcription on ``/v1/realtime``, driven by the official ``openai``
package's realtime client against the whole stack (real VAD, real workers, tiny.en)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.conftest import API_KEY, Stack
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, normalize, wer

RATE = 24000
CHUNK_S = 0.1
COMPLETED = "conversation.item.input_audio_transcription.completed"
VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}


def pcm24(fixture_id: str, seconds: float | None = None) -> bytes:
    """The fixture as OpenAI Realtime's input: PCM16 little-endian, mono, 24 kHz."""
    limit = ("-t", str(seconds)) if seconds else ()
    return ffmpeg_convert(fixture_bytes(fixture_id), *limit, "-ac", "1", "-ar", str(RATE), "-f", "s16le")


def silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


def client(stack: Stack, api_key: str = "unused") -> AsyncOpenAI:
    ws_base = stack.base_url.replace("http://", "ws://") + "/v1"
    return AsyncOpenAI(api_key=api_key, base_url=f"{stack.base_url}/v1", websocket_base_url=ws_base)


def session(turn_detection: dict[str, Any] | None = VAD, **transcription: Any) -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": "whisper-1", "language": "en", **transcription},
                "turn_detection": turn_detection,
            }
        },
    }


@dataclass
class Run:
    events: list[Any] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    def completed(self) -> list[Any]:
        return self.of("conversation.item.input_audio_transcription.completed")


async def stream(
    conn: Any,
    audio: bytes,
    speed: float = 1.0,
    run: Run | None = None,
    settle_s: float = 4.0,
    bytes_per_s: int = RATE * 2,
) -> Run:
    """Append ``audio`` in 100 ms chunks at ``speed`` x real time while collecting events;
    then wait until every committed item is completed and nothing came for ``settle_s``
    (an item still open fails the run only after ``settle_s`` + 60 s without an event: a
    slow CPU's finals may take longer than ``settle_s`` to come)."""
    run = run or Run()
    step = int(bytes_per_s * CHUNK_S)
    done_sending = asyncio.Event()

    async def send() -> None:
        start = time.monotonic()
        for n, at in enumerate(range(0, len(audio), step)):
            await conn.input_audio_buffer.append(audio=_b64(audio[at : at + step]))
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S / speed - time.monotonic()))
        done_sending.set()

    sender = asyncio.create_task(send())
    quiet_since = time.monotonic()
    try:
        while True:
            try:
                # While sending, look again every 0.5 s: a wait begun before the last append
                # would otherwise run its whole length when no event comes (manual turns).
                event = await asyncio.wait_for(conn.recv(), settle_s if done_sending.is_set() else 0.5)
            except TimeoutError:
                if done_sending.is_set() and _settled(run):
                    return run
                if done_sending.is_set() and time.monotonic() - quiet_since > settle_s + 60.0:
                    raise AssertionError(f"items never completed: {[e.type for e in run.events]}") from None
                continue
            quiet_since = time.monotonic()
            run.events.append(event)
            run.received_at.append(time.monotonic())
    finally:
        sender.cancel()


def _settled(run: Run) -> bool:
    committed = {e.item_id for e in run.of("input_audio_buffer.committed")}
    finished = {e.item_id for e in run.completed()}
    return committed <= finished


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


async def next_of(conn: Any, kind: str, timeout: float = 60.0) -> Any:
    """The next event of ``kind``; others before it are skipped (and returned unseen)."""
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(conn.recv(), max(0.1, deadline - time.monotonic()))
        if event.type == kind:
            return event


@pytest.mark.slow
async def test_jfk_in_real_time_gives_deltas_then_completed(stack: Stack) -> None:
    item = manifest()["jfk"]
    async with client(stack).realtime.connect(model="whisper-1") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(session=session())  # type: ignore[arg-type]
        updated = await next_of(conn, "session.updated")
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
        run = await stream(conn, pcm24("jfk") + silence(1.5))

    completed = run.completed()
    assert completed, [e.type for e in run.events]
    text = " ".join(e.transcript for e in completed)
    assert wer(item["reference"], text) <= 0.15, text
    # live text: a partial's delta reaches the client before its item's final. (The last
    # delta, pushed right before ``completed``, is the final's own remainder: not counted.)
    position = {e.item_id: run.events.index(e) for e in completed}
    deltas = run.of("conversation.item.input_audio_transcription.delta")
    early = [d for d in deltas if d.item_id in position and run.events.index(d) < position[d.item_id] - 1]
    assert early, [(e.type, getattr(e, "delta", None)) for e in run.events]
    # each item: speech_started < speech_stopped < committed < completed, in audio order
    for e in completed:
        kinds = [
            x.type
            for x in run.events
            if getattr(x, "item_id", None) == e.item_id and x.type.startswith("input_audio_buffer.")
        ]
        assert kinds == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
        ], kinds
    starts = [e.audio_start_ms for e in run.of("input_audio_buffer.speech_started")]
    assert starts == sorted(starts) and 0 <= starts[0] < 2000
    assert all(e.usage.seconds > 0 for e in completed)
    assert not run.of("error")


@pytest.mark.slow
async def test_pauses_between_fixtures_give_separate_items(stack: Stack) -> None:
    """Two recordings with a pause between them, faster than real time (VAD works in
    stream time): turn detection closes an item at the pause, none spans both."""
    jfk = pcm24("jfk")
    osr = pcm24("osr_us_000_0034", seconds=6.5)  # "A gold ring will please most any girl. The long ..."
    async with client(stack).realtime.connect(model="whisper-1") as conn:
        await conn.session.update(session=session())  # type: ignore[arg-type]
        await next_of(conn, "session.updated")
        run = await stream(conn, jfk + silence(2.0) + osr + silence(1.5), speed=3.0)

    jfk_end_ms = len(jfk) * 1000 // (2 * RATE)
    start_of = {e.item_id: e.audio_start_ms for e in run.of("input_audio_buffer.speech_started")}
    completed = run.completed()
    first = [e.transcript for e in completed if start_of[e.item_id] < jfk_end_ms]
    second = [e.transcript for e in completed if start_of[e.item_id] > jfk_end_ms]
    assert first and second, [(start_of[e.item_id], e.transcript) for e in completed]
    assert wer(manifest()["jfk"]["reference"], " ".join(first)) <= 0.15, first
    assert "gold ring" in normalize(" ".join(second)), second
    assert "country" not in normalize(" ".join(second)), second
    stops = {e.item_id: e.audio_end_ms for e in run.of("input_audio_buffer.speech_stopped")}
    assert all(stops[e.item_id] <= jfk_end_ms + 700 for e in completed if start_of[e.item_id] < jfk_end_ms)


@pytest.mark.slow
async def test_bad_input_gets_error_events_and_the_session_stays_usable(stack: Stack) -> None:
    async with client(stack).realtime.connect(model="whisper-1") as conn:
        await next_of(conn, "session.created")

        for hostile in ("{not json", "[" * 100_000 + "]" * 100_000, '{"type": 1' + "0" * 5000 + "}"):
            await conn.send_raw(hostile)
            error = await next_of(conn, "error")
            assert error.error.code == "invalid_json" and error.error.type == "invalid_request_error"

        await conn.send({"type": "response.create", "event_id": "evt_unknown"})  # type: ignore[arg-type]
        error = await next_of(conn, "error")
        assert (error.error.code, error.error.event_id, error.error.param) == (
            "invalid_event",
            "evt_unknown",
            "type",
        )

        await conn.input_audio_buffer.append(audio="!!not base64!!", event_id="evt_b64")
        error = await next_of(conn, "error")
        assert (error.error.code, error.error.event_id) == ("invalid_base64", "evt_b64")

        wav = session()
        wav["audio"]["input"]["format"] = {"type": "audio/wav"}
        await conn.send({"type": "session.update", "session": wav})  # type: ignore[arg-type]
        error = await next_of(conn, "error")
        assert error.error.code == "invalid_value"
        assert error.error.param == "session.audio.input.format.type"

        await conn.session.update(session=session(model="no-such-model"), event_id="evt_model")  # type: ignore[arg-type]
        error = await next_of(conn, "error")
        assert (error.error.code, error.error.event_id) == ("unknown_model", "evt_model")
        assert error.error.param == "session.audio.input.transcription.model"

        await conn.input_audio_buffer.commit(event_id="evt_empty")
        error = await next_of(conn, "error")
        assert error.error.code == "input_audio_buffer_commit_empty"

        # none of that changed the session: manual turns (no VAD) transcribe on commit
        await conn.session.update(session=session(turn_detection=None))  # type: ignore[arg-type]
        updated = await next_of(conn, "session.updated")
        assert updated.session.audio.input.transcription.model == "whisper-1"
        assert updated.session.audio.input.turn_detection is None
        run = Run()
        await stream(conn, pcm24("jfk", seconds=4.5), speed=4.0, run=run, settle_s=1.0)
        assert not run.completed(), "without turn detection only a commit ends an item"
        assert not run.of("input_audio_buffer.speech_started")
        await conn.input_audio_buffer.commit()
        await stream(conn, b"", run=run)
    completed = run.completed()
    assert len(completed) == 1, [e.type for e in run.events]
    assert "fellow americans" in normalize(completed[0].transcript), completed[0].transcript
    assert not run.of("error")


@pytest.mark.slow
@pytest.mark.parametrize("key", ["wrong-key", API_KEY])
async def test_api_key_by_bearer_header(api_stack: Stack, key: str) -> None:
    """The SDK sends ``Authorization: Bearer`` on the WebSocket handshake, as on HTTP."""
    connection = client(api_stack, api_key=key).realtime.connect(model="whisper-1")
    if key != API_KEY:
        with pytest.raises(Exception, match="403"):
            await connection.enter()
        return
    async with connection as conn:
        assert (await conn.recv()).type == "session.created"


@pytest.mark.slow
async def test_beta_client_with_g711_mulaw(stack: Stack) -> None:
    """The package's beta client (``transcription_session.update``) and telephone audio:
    G.711 mu-law at 8 kHz, expanded and resampled without ffmpeg."""
    item = manifest()["jfk"]
    mulaw = (
        ffmpeg_convert(fixture_bytes("jfk"), "-ac", "1", "-ar", "8000", "-f", "mulaw") + bytes([0xFF]) * 12000
    )
    async with client(stack).beta.realtime.connect(model="whisper-1") as conn:
        await conn.transcription_session.update(
            session={
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            }
        )
        updated = await next_of(conn, "transcription_session.updated")
        assert updated.session.input_audio_format == "g711_ulaw"
        run = await stream(conn, mulaw, speed=5.0, bytes_per_s=8000)
    events = run.events
    committed = {e.item_id for e in events if e.type == "input_audio_buffer.committed"}
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert committed and committed == {e.item_id for e in completed}, [e.type for e in events]
    assert wer(item["reference"], " ".join(e.transcript for e in completed)) <= 0.15, completed


@pytest.mark.slow
async def test_clear_drops_uncommitted_audio(stack: Stack) -> None:
    """Manual turns: audio appended then cleared never becomes text; the stream goes on
    (settings changed mid-stream included) and the next commit has only the new audio."""
    async with client(stack).realtime.connect(model="whisper-1") as conn:
        await conn.session.update(session=session(turn_detection=None))  # type: ignore[arg-type]
        await next_of(conn, "session.updated")
        run = await stream(conn, pcm24("jfk", seconds=4.5), speed=4.0, settle_s=1.0)
        await conn.input_audio_buffer.clear()
        await conn.session.update(session=session(turn_detection=None, prompt="Harvard sentences."))  # type: ignore[arg-type]
        await stream(
            conn, silence(0.5) + pcm24("osr_us_000_0034", seconds=3.3), speed=4.0, run=run, settle_s=1.0
        )
        await conn.input_audio_buffer.commit()
        await stream(conn, b"", run=run)
    kinds = [e.type for e in run.events]
    assert "input_audio_buffer.cleared" in kinds and "session.updated" in kinds, kinds
    completed = run.completed()
    assert len(completed) == 1, kinds
    text = normalize(completed[0].transcript)
    assert "gold ring" in text and "americans" not in text, text
    assert not run.of("error")


async def commit_and_wait(conn: Any, audio: bytes, event_id: str | None = None) -> tuple[Run, float]:
    """Append ``audio`` at once, commit it, and collect events until the commit is answered
    (its item done or ``failed``, or an ``error``); with the seconds from sending the
    commit to its answer (``completed``, ``failed`` or ``error``)."""
    for at in range(0, len(audio), int(RATE * 2 * CHUNK_S)):
        await conn.input_audio_buffer.append(audio=_b64(audio[at : at + int(RATE * 2 * CHUNK_S)]))
    await conn.input_audio_buffer.commit(**({"event_id": event_id} if event_id else {}))
    sent = time.monotonic()
    run = Run()
    ends = ("error", "conversation.item.input_audio_transcription.failed", "conversation.item.done")
    while not any(e.type in ends for e in run.events):
        run.events.append(await asyncio.wait_for(conn.recv(), 60))
        run.received_at.append(time.monotonic())
    answers = ("error", "conversation.item.input_audio_transcription.failed", COMPLETED)
    answered = next(t for e, t in zip(run.events, run.received_at, strict=True) if e.type in answers)
    return run, answered - sent


@pytest.mark.slow
async def test_manual_commits_of_a_short_word_too_little_audio_and_silence(stack: Stack) -> None:
    """OpenAI's commit semantics with ``turn_detection: null`` (what voice-agent frameworks
    send when their own detector ends a phrase): only under 100 ms is refused, as
    ``input_audio_buffer_commit_empty``, and the session goes on; a 0.45 s commit holding
    one short word is an item with that word (tiny.en hears "not", cut to 0.35 s, as
    "No!" through the service; "country" it hears alike offline and here); pure silence
    is an item with an empty transcript (no words invented). Each commit is answered exactly once."""
    jfk = pcm24("jfk")
    word = jfk[int(5.95 * RATE) * 2 : int(6.4 * RATE) * 2]  # "country" of "what your country", 0.45 s
    async with client(stack).realtime.connect(model="whisper-1") as conn:
        await conn.session.update(session=session(turn_detection=None))  # type: ignore[arg-type]
        updated = await next_of(conn, "session.updated")
        assert updated.session.audio.input.turn_detection is None

        short, _ = await commit_and_wait(conn, silence(0.05), event_id="evt_50ms")
        assert [e.type for e in short.events] == ["error"]
        error = short.events[0].error
        assert (error.code, error.event_id) == ("input_audio_buffer_commit_empty", "evt_50ms")
        assert "50.00ms" in error.message

        spoken, spoken_latency = await commit_and_wait(conn, word)
        silent, silent_latency = await commit_and_wait(conn, silence(1.0))

    for run, transcript in ((spoken, "country"), (silent, "")):
        kinds = [e.type for e in run.events if e.type != "conversation.item.input_audio_transcription.delta"]
        assert kinds == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            COMPLETED,
            "conversation.item.done",
        ], kinds
        (completed,) = run.completed()
        assert normalize(completed.transcript) == transcript, completed.transcript
        assert run.of("input_audio_buffer.committed")[0].item_id == completed.item_id
    assert spoken.of("input_audio_buffer.committed")[0].previous_item_id is None
    assert silent.of("input_audio_buffer.committed")[0].previous_item_id == spoken.completed()[0].item_id
    print(f"completed after commit: word {spoken_latency:.2f} s, silence {silent_latency:.2f} s")
    assert spoken_latency < 10.0 and silent_latency < 2.0
