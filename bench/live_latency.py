"""Live latency: stream fixtures in real time over /ws with 1, 4 and 8 concurrent streams
against ``whisper-appliance up`` (2 workers by default, loopback only) and print, per
stream count, the median and p95 of

- final latency: from sending the chunk that holds the end of an utterance's speech to
  receiving its final transcript;
- first-partial latency: from sending the chunk that holds the utterance's first speech
  to receiving its first text with words in it (partial, or the final if no partial came
  first; an empty partial shows nothing).

Chunk times come from the pacing (chunk i of 250 ms is sent at i * 0.25 s); each chunk
holds 250 ms of audio, cut at the WebM blocks' timestamps (``tests/webm_chunks.py``), so
audio times are exact to about +-0.02 s.

    .venv/bin/python -m bench.live_latency [--streams 1,4,8] [--workers 2] [--server ws://…/ws]
"""

from __future__ import annotations

import argparse
import statistics
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.sync.client import connect

from audio_service.segmenter import SegmenterOptions
from bench.common import live_latencies, machine, print_table, service, write_report
from tests.helpers import chunk_stream, finals, fixture_pcm, manifest, pcm_to_webm, stream_live, wer

CHUNK_S = 0.25
TAIL_S = SegmenterOptions().tail_s
PREROLL_S = SegmenterOptions().preroll_s
FIXTURES = ("jfk", "osr_us_000_0034")


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def one_stream(ws_url: str, chunks: list[bytes], out: list[dict[str, Any]], timeout: float = 300) -> None:
    with connect(ws_url, max_size=None) as ws:
        result = stream_live(ws, chunks, chunk_s=CHUNK_S, timeout=timeout, require_end=False)
    final_latency, first_latency = live_latencies(
        result.messages, result.received_at, chunk_s=CHUNK_S, tail_s=TAIL_S, preroll_s=PREROLL_S
    )
    out.append(
        {"final": final_latency, "first": first_latency, "messages": result.messages, "ended": result.ended}
    )


def stream_audio(fixtures: list[str]) -> tuple[list[bytes], float, str]:
    """The fixtures one after another with 1.5 s pauses, as 250 ms WebM chunks; also
    the stream's length in seconds and its reference text."""
    m = manifest()
    pause = np.zeros(int(1.5 * 16000), dtype=np.int16)
    parts = [p for f in fixtures for p in (pause, fixture_pcm(f))][1:]
    pcm = np.concatenate(parts)
    reference = " ".join(m[f]["reference"] for f in fixtures)
    return chunk_stream(pcm_to_webm(pcm), len(pcm) / 16000, CHUNK_S), len(pcm) / 16000, reference


def run(
    ws_url: str,
    counts: list[int],
    fixtures: tuple[str, ...] = FIXTURES,
    *,
    timeout: float = 300,
    on_row: Callable[[dict[str, Any]], None] = print,
) -> list[dict[str, Any]]:
    """One row per stream count. ``timeout``: how long a stream waits for the service
    after its last chunk (the time box of one stream count beyond the audio itself)."""
    chunks, audio_s, reference = stream_audio(list(fixtures))
    rows = []
    for count in counts:
        results: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=one_stream, args=(ws_url, chunks, results, timeout)) for _ in range(count)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = [x for r in results for x in r["final"]]
        first = [x for r in results for x in r["first"]]
        ended = [r for r in results if r["ended"]]
        errors = [wer(reference, " ".join(f["transcript"] for f in finals(r["messages"]))) for r in ended]
        rows.append(
            {
                "streams": count,
                "streams_completed": len(ended),  # the others timed out: their figures are partial
                "stream_audio_s": round(audio_s, 1),
                "finals": len(final),
                "final_median_s": percentile(final, 50),
                "final_p95_s": percentile(final, 95),
                "first_partial_median_s": percentile(first, 50),
                "first_partial_p95_s": percentile(first, 95),
                "wer": round(statistics.mean(errors), 3) if errors else None,
            }
        )
        on_row(rows[-1])
    return rows


COLUMNS = [
    ("streams", "streams", 8), ("ended", "streams_completed", 7), ("finals", "finals", 8),
    ("final p50", "final_median_s", 11), ("final p95", "final_p95_s", 11),
    ("1st text p50", "first_partial_median_s", 14), ("p95", "first_partial_p95_s", 8), ("WER", "wer", 7),
]  # fmt: skip


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
        f"audio {rows[0]['stream_audio_s'] if rows else '?'} s per stream, real time"
    )
    print_table(rows, COLUMNS)
    write_report(args.json, rows, model=args.model, workers=args.workers)


if __name__ == "__main__":
    main()
