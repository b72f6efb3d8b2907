"""Live latency: stream fixtures in real time over /ws with 1, 4 and 8 concurrent streams
against ``whisper-appliance up`` (2 workers by default, loopback only) and print, per
stream count, the median and p95 of

- final latency: from sending the chunk that holds the end of an utterance's speech to
  receiving its final transcript;
- first-partial latency: from sending the chunk that holds the utterance's first speech
  to receiving its first text (partial, or the final if no partial came first).

Chunk times come from the pacing (chunk i of 250 ms is sent at i * 0.25 s); chunk
boundaries follow bytes, as MediaRecorder's do, so audio times are exact to about
+-0.1 s.

    .venv/bin/python -m bench.live_latency [--streams 1,4,8] [--workers 2] [--server ws://…/ws]
"""

from __future__ import annotations

import argparse
import statistics
import threading
from typing import Any

import numpy as np
from websockets.sync.client import connect

from audio_service.segmenter import SegmenterOptions
from bench.common import machine, service, write_report
from tests.helpers import chunk_stream, finals, fixture_pcm, manifest, pcm_to_webm, stream_live, wer

CHUNK_S = 0.25
TAIL_S = SegmenterOptions().tail_s


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def one_stream(ws_url: str, chunks: list[bytes], out: list[dict[str, Any]]) -> None:
    with connect(ws_url, max_size=None) as ws:
        result = stream_live(ws, chunks, chunk_s=CHUNK_S, timeout=300)
    first_seen: dict[str, float] = {}
    final_latency, first_latency = [], []
    for message, at in zip(result.messages, result.received_at, strict=True):
        if message.get("type") != "transcript":
            continue
        uid = message["utterance_id"]
        if uid not in first_seen:
            first_seen[uid] = at
            onset_chunk = int(message["start"] / CHUNK_S)
            first_latency.append(at - onset_chunk * CHUNK_S)
        if message["final"]:
            speech_end_chunk = int(max(0.0, message["end"] - TAIL_S) / CHUNK_S)
            final_latency.append(at - speech_end_chunk * CHUNK_S)
    out.append({"final": final_latency, "first": first_latency, "messages": result.messages})


def run(ws_url: str, counts: list[int]) -> list[dict[str, Any]]:
    m = manifest()
    pause = np.zeros(int(1.5 * 16000), dtype=np.int16)
    pcm = np.concatenate([fixture_pcm("jfk"), pause, fixture_pcm("osr_us_000_0034")])
    reference = f"{m['jfk']['reference']} {m['osr_us_000_0034']['reference']}"
    chunks = chunk_stream(pcm_to_webm(pcm), len(pcm) / 16000, CHUNK_S)
    rows = []
    for count in counts:
        results: list[dict[str, Any]] = []
        threads = [threading.Thread(target=one_stream, args=(ws_url, chunks, results)) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = [x for r in results for x in r["final"]]
        first = [x for r in results for x in r["first"]]
        errors = [
            statistics.mean([wer(reference, " ".join(f["transcript"] for f in finals(r["messages"])))])
            for r in results
        ]
        rows.append(
            {
                "streams": count,
                "finals": len(final),
                "final_median_s": round(statistics.median(final), 3),
                "final_p95_s": round(percentile(final, 95), 3),
                "first_partial_median_s": round(statistics.median(first), 3),
                "first_partial_p95_s": round(percentile(first, 95), 3),
                "wer": round(statistics.mean(errors), 3),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="ws:// URL of a running service's /ws (default: start one)")
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.streams.split(",")]
    with service(args.server, workers=args.workers, env={"S2T_MODEL": args.model}) as ws_url:
        rows = run(ws_url, counts)
    print(
        f"machine: {machine()}; model {args.model}; {args.workers} worker(s); "
        "audio 48 s per stream, real time"
    )
    print(
        f"{'streams':>8}{'finals':>8}{'final p50':>11}{'final p95':>11}"
        f"{'1st partial p50':>17}{'p95':>8}{'WER':>7}"
    )
    for r in rows:
        print(
            f"{r['streams']:>8}{r['finals']:>8}{r['final_median_s']:>11}{r['final_p95_s']:>11}"
            f"{r['first_partial_median_s']:>17}{r['first_partial_p95_s']:>8}{r['wer']:>7}"
        )
    write_report(args.json, rows, model=args.model, workers=args.workers)


if __name__ == "__main__":
    main()
