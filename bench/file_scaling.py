"""File transcription scaling: one ~3-minute file through ``/v1/audio/transcriptions``
with 1, 2 and 4 workers; wall time and speed-up over one worker.

The file is built in memory from the speech fixtures with pauses (``tests.long_audio``),
so the audio service splits it at silences into pieces the workers share. For each
worker count the bench starts ``whisper-appliance up`` on a Redis of its own (loopback
only), sends one short warm-up file, then times ``--runs`` requests and keeps the median.
``up`` gives each worker cores / workers threads (at least one), so on a machine with
fewer cores than workers the workers share cores and the speed-up flattens.
``--threads N`` fixes every worker's threads instead (e.g. 1, to see how far pieces in
parallel scale when each worker has one core).

    .venv/bin/python -m bench.file_scaling [--workers 1,2,4] [--runs 3] [--model tiny.en] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx

from bench.common import machine, running_stack, write_report
from tests import long_audio
from tests.helpers import fixture_bytes, wer


def transcribe(base_url: str, audio: bytes, name: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": (name, audio)},
        data={"model": "whisper-1", "response_format": "verbose_json", "language": "en"},
        timeout=900,
    )
    response.raise_for_status()
    return response.json()


def measure(
    workers: int, audio: bytes, reference: str, runs: int, model: str, threads: int | None
) -> dict[str, Any]:
    env = {"S2T_MODEL": model, **({"S2T_CPU_THREADS": str(threads)} if threads else {})}
    with running_stack(workers=workers, env=env) as running:
        return timed_runs(running.base_url, workers, audio, reference, runs)


def timed_runs(base_url: str, workers: int, audio: bytes, reference: str, runs: int) -> dict[str, Any]:
    transcribe(base_url, fixture_bytes("jfk"), "jfk.flac")  # warm-up: models loaded, VAD ready
    times, errors, segments = [], [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        body = transcribe(base_url, audio, "long.flac")
        times.append(time.perf_counter() - t0)
        errors.append(wer(reference, body["text"]))
        segments = len(body["segments"])
    return {
        "workers": workers,
        "wall_s": round(statistics.median(times), 2),
        "runs_s": [round(t, 2) for t in times],
        "wer": round(statistics.median(errors), 3),
        "segments": segments,
        "audio_s": body["duration"],
    }


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, help="threads per worker (default: cores / workers)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    audio, placements = long_audio.build()
    reference = " ".join(p.reference for p in placements)
    counts = [int(n) for n in args.workers.split(",") if n]
    rows = [measure(n, audio, reference, args.runs, args.model, args.threads) for n in counts]
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(base / row["wall_s"], 2)
        row["x_realtime"] = round(row["audio_s"] / row["wall_s"], 1)
    threads = f"{args.threads} thread(s) per worker" if args.threads else "cores / workers threads per worker"
    print(
        f"machine: {machine()}; model {args.model}; {rows[0]['audio_s']:.0f} s file; {threads}; "
        f"median of {args.runs} runs"
    )
    print(f"{'workers':>8}{'wall s':>9}{'speed-up':>10}{'x realtime':>12}{'WER':>7}  runs")
    for r in rows:
        print(
            f"{r['workers']:>8}{r['wall_s']:>9}{r['speedup']:>10}{r['x_realtime']:>12}{r['wer']:>7}  "
            f"{r['runs_s']}"
        )
    write_report(args.json, rows, model=args.model, threads=args.threads)


if __name__ == "__main__":
    main()
