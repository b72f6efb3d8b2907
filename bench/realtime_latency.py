"""Realtime latency: N concurrent OpenAI Realtime transcription sessions on ``/v1/realtime``
(the official ``openai`` client), each streaming the fixtures as PCM16 24 kHz in real time
(100 ms appends), against ``whisper-appliance up`` (2 workers by default, loopback only).
Printed per session count, median and p95 of

- completed latency: end of an item's speech -> its ``...transcription.completed``;
- first-delta latency: end of speech -> the item's first ``...transcription.delta``
  (negative: text was on screen before the speaker stopped);
- first-delta-from-onset: the item's speech start -> its first delta (compare with
  ``bench.live_latency``'s first-partial figure for ``/ws``).

Speech start/end come from the server's ``speech_started.audio_start_ms`` (minus the
prefix padding) and ``speech_stopped.audio_end_ms`` (minus the kept tail), mapped to the
moment the append holding that audio was sent. Run ``bench.live_latency`` on the same
machine for the ``/ws`` figures beside these.

    .venv/bin/python -m bench.realtime_latency [--sessions 1,8] [--workers 2] [--server http://…]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from audio_service.segmenter import SegmenterOptions
from bench.common import machine, service, write_report
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, wer

RATE = 24000
CHUNK_S = 0.1
TAIL_MS = SegmenterOptions().tail_s * 1000
PREFIX_MS = 300
SETTLE_S = 10.0  # no event for this long after the last append: the session is done
SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": PREFIX_MS,
                "silence_duration_ms": 500,
            },
        }
    },
}


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def audio() -> tuple[bytes, str]:
    def pcm(fixture_id: str) -> bytes:
        return ffmpeg_convert(fixture_bytes(fixture_id), "-ac", "1", "-ar", str(RATE), "-f", "s16le")

    m = manifest()
    pause = bytes(int(1.5 * RATE) * 2)
    data = pcm("jfk") + pause + pcm("osr_us_000_0034") + pause
    return data, f"{m['jfk']['reference']} {m['osr_us_000_0034']['reference']}"


async def one_session(base_url: str, data: bytes) -> dict[str, Any]:
    ws_base = base_url.replace("http://", "ws://").replace("https://", "wss://") + "/v1"
    client = AsyncOpenAI(api_key="bench", base_url=f"{base_url}/v1", websocket_base_url=ws_base)
    step = int(RATE * CHUNK_S) * 2
    events: list[tuple[float, Any]] = []
    async with client.realtime.connect(model="whisper-1") as conn:
        await conn.session.update(session=SESSION)  # type: ignore[arg-type]
        start = time.monotonic()

        async def send() -> None:
            for n, at in enumerate(range(0, len(data), step)):
                await conn.input_audio_buffer.append(audio=base64.b64encode(data[at : at + step]).decode())
                await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.monotonic()))

        sender = asyncio.create_task(send())
        last = time.monotonic()
        while not sender.done() or time.monotonic() - last < SETTLE_S:  # until quiet after the audio
            try:
                event = await asyncio.wait_for(conn.recv(), 1.0)
            except TimeoutError:
                continue
            last = time.monotonic()
            events.append((last - start, event))
    sender.cancel()
    return measure(events)


def sent_at(audio_ms: float) -> float:
    """When the append holding this moment of audio went out (relative to the first)."""
    return int(max(0.0, audio_ms) / 1000 / CHUNK_S) * CHUNK_S


def measure(events: list[tuple[float, Any]]) -> dict[str, Any]:
    onset: dict[str, float] = {}
    end: dict[str, float] = {}
    first_delta: dict[str, float] = {}
    completed: dict[str, tuple[float, str]] = {}
    for at, e in events:
        if e.type == "input_audio_buffer.speech_started":
            onset[e.item_id] = sent_at(e.audio_start_ms + PREFIX_MS)
        elif e.type == "input_audio_buffer.speech_stopped":
            end[e.item_id] = sent_at(e.audio_end_ms - TAIL_MS)
        elif e.type == "conversation.item.input_audio_transcription.delta":
            first_delta.setdefault(e.item_id, at)
        elif e.type == "conversation.item.input_audio_transcription.completed":
            completed[e.item_id] = (at, e.transcript)
    items = [i for i in completed if i in end]
    return {
        "completed": [completed[i][0] - end[i] for i in items],
        "delta": [first_delta[i] - end[i] for i in items if i in first_delta],
        "delta_onset": [first_delta[i] - onset[i] for i in items if i in first_delta and i in onset],
        "text": " ".join(completed[i][1] for i in completed),
        "items": len(completed),
        "items_with_delta": len([i for i in completed if i in first_delta]),
    }


async def run(base_url: str, counts: list[int]) -> list[dict[str, Any]]:
    data, reference = audio()
    rows = []
    for count in counts:
        results = await asyncio.gather(*(one_session(base_url, data) for _ in range(count)))
        completed = [x for r in results for x in r["completed"]]
        delta = [x for r in results for x in r["delta"]]
        onset = [x for r in results for x in r["delta_onset"]]
        rows.append(
            {
                "sessions": count,
                "items": sum(r["items"] for r in results),
                "items_with_delta": sum(r["items_with_delta"] for r in results),
                "completed_median_s": median(completed),
                "completed_p95_s": percentile(completed, 95),
                "first_delta_median_s": median(delta),
                "first_delta_p95_s": percentile(delta, 95),
                "first_delta_from_onset_median_s": median(onset),
                "wer": round(statistics.mean(wer(reference, r["text"]) for r in results), 3),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="http:// base URL of a running service (default: start one)")
    parser.add_argument("--sessions", default="1,8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    ws_server = args.server.replace("http", "ws", 1).rstrip("/") + "/ws" if args.server else None
    with service(ws_server, workers=args.workers, env={"S2T_MODEL": args.model}) as ws_url:
        base_url = ws_url.replace("ws", "http", 1).removesuffix("/ws")
        rows = asyncio.run(run(base_url, counts))
    print(
        f"machine: {machine()}; model {args.model}; {args.workers} worker(s); "
        "audio 50 s per session, real time"
    )
    print(
        f"{'sessions':>9}{'items':>7}{'w/delta':>9}{'completed p50':>15}{'p95':>8}"
        f"{'1st delta p50':>15}{'p95':>8}{'delta-onset p50':>17}{'WER':>7}"
    )
    for r in rows:
        print(
            f"{r['sessions']:>9}{r['items']:>7}{r['items_with_delta']:>9}{r['completed_median_s']:>15}"
            f"{r['completed_p95_s']:>8}{r['first_delta_median_s']:>15}{r['first_delta_p95_s']:>8}"
            f"{r['first_delta_from_onset_median_s']:>17}{r['wer']:>7}"
        )
    write_report(args.json, rows, model=args.model, workers=args.workers)


if __name__ == "__main__":
    main()
