"""Live latency through each live protocol on the same audio: ``/ws`` (this service's
browser protocol), ``/v1/listen`` (Deepgram, through the official ``deepgram-sdk``) and
``/`` (WhisperLive's protocol, with the messages its Python client sends: options, float32
frames, ``END_OF_AUDIO``). Every protocol streams jfk (11 s) plus 1.5 s of silence as
16 kHz PCM in real time (100 ms frames), ``--streams`` sessions at once (1 by default), ``--rounds`` times
each, against ``whisper-appliance up`` (2 workers by default).

Printed per protocol: final latency (a final's arrival minus the moment the audio at the
utterance's end was sent; median and max over all finals), first text (first partial's
arrival after the first frame), and the WER of the settled text. The protocols share
the live path, so differences are their renderers' and clients' own.

    .venv/bin/python -m bench.protocol_latency [--rounds 3] [--streams 1,4] [--workers 2] [--server http://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from deepgram import AsyncDeepgramClient
from deepgram.environment import DeepgramClientEnvironment

from bench.common import machine, print_table, running_stack, write_report
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, wer

RATE = 16000
CHUNK_S = 0.1


@dataclass
class Session:
    started: float = 0.0  # wall time of the first frame
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # (arrival, end_s, text)
    first_text: float | None = None

    def partial(self, now: float) -> None:
        if self.first_text is None:
            self.first_text = now - self.started

    def final(self, now: float, end_s: float, text: str) -> None:
        self.partial(now)
        self.finals.append((now, end_s, text))

    def latencies(self) -> list[float]:
        return [arrival - (self.started + end_s) for arrival, end_s, _ in self.finals]

    def text(self) -> str:
        return " ".join(t for _, _, t in self.finals)


def pcm() -> bytes:
    audio = ffmpeg_convert(fixture_bytes("jfk"), "-ac", "1", "-ar", str(RATE), "-f", "s16le")
    return audio + bytes(int(1.5 * RATE) * 2)


async def send_realtime(
    session: Session, frames: list[bytes], send: Callable[[bytes], Awaitable[None]]
) -> None:
    session.started = time.monotonic()
    for i, frame in enumerate(frames):
        await send(frame)
        await asyncio.sleep(max(0.0, session.started + (i + 1) * CHUNK_S - time.monotonic()))


def frames_of(data: bytes) -> list[bytes]:
    step = int(RATE * CHUNK_S) * 2
    return [data[i : i + step] for i in range(0, len(data), step)]


async def over_ws(base: str, data: bytes) -> Session:
    session = Session()
    async with websockets.connect(base.replace("http", "ws", 1) + "/ws") as ws:
        await ws.send(
            json.dumps({"command": "start_real_recording", "format": "pcm16_16000", "language": "en"})
        )

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                now = time.monotonic()
                if msg.get("type") == "transcript":
                    if msg["final"]:
                        session.final(now, float(msg["end"]), msg["transcript"])
                    else:
                        session.partial(now)
                elif msg.get("type") == "status" and msg.get("recording") is False:
                    return

        reader = asyncio.create_task(read())
        await send_realtime(session, frames_of(data), ws.send)
        await ws.send(json.dumps({"command": "stop_recording"}))
        await asyncio.wait_for(reader, 120)
    return session


async def over_deepgram(base: str, data: bytes) -> Session:
    session = Session()
    ws = base.replace("http", "ws", 1)
    env = DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)
    client = AsyncDeepgramClient(api_key="bench", environment=env)
    options = {"model": "nova-3", "encoding": "linear16", "sample_rate": str(RATE), "interim_results": "true"}
    async with client.listen.v1.connect(**options, punctuate="true") as conn:

        async def read() -> None:
            async for msg in conn:
                now = time.monotonic()
                if getattr(msg, "type", None) == "Results":
                    if msg.is_final:
                        session.final(now, msg.start + msg.duration, msg.channel.alternatives[0].transcript)
                    else:
                        session.partial(now)

        reader = asyncio.create_task(read())
        await send_realtime(session, frames_of(data), conn.send_media)
        await conn.send_close_stream()
        await asyncio.wait_for(reader, 120)
    return session


async def over_whisperlive(base: str, data: bytes) -> Session:
    session = Session()
    uid = str(uuid.uuid4())
    floats = (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).tobytes()
    async with websockets.connect(base.replace("http", "ws", 1)) as ws:
        await ws.send(
            json.dumps(
                {"uid": uid, "language": "en", "task": "transcribe", "model": "small", "use_vad": True}
            )
        )
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ready.get("message") == "SERVER_READY", ready
        seen: set[str] = set()

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                now = time.monotonic()
                if msg.get("message") == "DISCONNECT":
                    return
                for seg in msg.get("segments", []):
                    if seg["completed"] and seg["start"] not in seen:
                        seen.add(seg["start"])
                        session.final(now, float(seg["end"]), seg["text"])
                    elif not seg["completed"]:
                        session.partial(now)

        reader = asyncio.create_task(read())
        step = int(RATE * CHUNK_S) * 4
        await send_realtime(session, [floats[i : i + step] for i in range(0, len(floats), step)], ws.send)
        await ws.send(b"END_OF_AUDIO")
        await asyncio.wait_for(reader, 120)
    return session


PROTOCOLS: dict[str, Callable[[str, bytes], Awaitable[Session]]] = {
    "/ws": over_ws,
    "/v1/listen (Deepgram SDK)": over_deepgram,
    "/ (WhisperLive)": over_whisperlive,
}


async def together(
    run: Callable[[str, bytes], Awaitable[Session]], base: str, data: bytes, n: int
) -> list[Session]:
    return list(await asyncio.gather(*(run(base, data) for _ in range(n))))


def measure(base: str, rounds: int, streams: list[int]) -> list[dict[str, Any]]:
    data, reference = pcm(), manifest()["jfk"]["reference"]
    rows = []
    for n, (name, run) in ((n, p) for n in streams for p in PROTOCOLS.items()):
        sessions = [s for _ in range(rounds) for s in asyncio.run(together(run, base, data, n))]
        latencies = [x for s in sessions for x in s.latencies()]
        rows.append(
            {
                "protocol": name,
                "streams": n,
                "finals": len(latencies),
                "final_p50_s": round(statistics.median(latencies), 3),
                "final_max_s": round(max(latencies), 3),
                "first_text_s": round(statistics.median(s.first_text or float("nan") for s in sessions), 3),
                "wer": round(statistics.mean(wer(reference, s.text()) for s in sessions), 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", default="1", help="concurrent sessions, comma-separated (default 1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", help="base URL of a running service (default: start one)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    streams = [int(n) for n in args.streams.split(",")]
    if args.server:
        rows = measure(args.server.rstrip("/"), args.rounds, streams)
    else:
        with running_stack(workers=args.workers) as running:
            rows = measure(running.base_url, args.rounds, streams)
    print(machine())
    print_table(
        rows,
        [
            ("protocol", "protocol", 28),
            ("streams", "streams", 9),
            ("finals", "finals", 8),
            ("final p50 s", "final_p50_s", 13),
            ("final max s", "final_max_s", 13),
            ("first text s", "first_text_s", 14),
            ("WER", "wer", 7),
        ],
    )
    write_report(args.json, rows, rounds=args.rounds, workers=args.workers, streams=streams)


if __name__ == "__main__":
    main()
