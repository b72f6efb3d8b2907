"""Pipeline overhead: end-to-end time through /ws versus the same model in-process.

For each fixture clip (WebM/Opus, as a browser sends it) this prints the median wall
time of ``process_audio`` -> "Processing complete" through a running service, the
median time the same model takes in this process on the same decoded audio with the
same decoding settings, and their ratio. Without ``--server`` it starts
``whisper-appliance up`` with one worker on a free port (loopback only) and stops it
afterwards.

    .venv/bin/python -m bench.pipeline_overhead [--runs 5] [--server ws://host:port/ws]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from tqdm import tqdm
from websockets.sync.client import connect

from audio_service.decoder import decode
from bench.common import machine, print_table, service, write_report
from shared.config import cpu_count
from tests.helpers import (
    collect_until_complete,
    fixture_webm,
    joined_text,
    manifest,
    process_audio_message,
    send_json,
    wer,
)
from whisper_service.backends import DecodeOptions
from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber


def run(ws_url: str, fixtures: list[str], runs: int, model: str, workers: int) -> list[dict[str, Any]]:
    threads = max(1, cpu_count() // workers)  # what each worker of `up --workers N` gets
    local = FasterWhisperTranscriber(model, device="auto", compute_type="default", cpu_threads=threads)
    rows = []
    with connect(ws_url, max_size=None) as ws:
        for fixture_id in fixtures:
            item = manifest()[fixture_id]
            webm = fixture_webm(fixture_id)
            audio = asyncio.run(decode(webm, max_seconds=3600)).as_float32()
            language = item["language"]
            options = DecodeOptions(language=language, beam_size=5)
            local.transcribe(audio, options)  # warm-up, both sides
            send_json(ws, process_audio_message(webm, language=language))
            collect_until_complete(ws)
            in_process, end_to_end, errors = [], [], []
            for _ in tqdm(range(runs), desc=fixture_id, leave=False):
                t0 = time.perf_counter()
                local.transcribe(audio, options)
                in_process.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                send_json(ws, process_audio_message(webm, language=language))
                messages = collect_until_complete(ws)
                end_to_end.append(time.perf_counter() - t0)
                errors.append(wer(item["reference"], joined_text(messages)))
            rows.append(
                {
                    "fixture": fixture_id,
                    "audio_s": round(len(audio) / 16000, 2),
                    "in_process_s": round(statistics.median(in_process), 3),
                    "end_to_end_s": round(statistics.median(end_to_end), 3),
                    "ratio": round(statistics.median(end_to_end) / statistics.median(in_process), 3),
                    "wer": round(statistics.median(errors), 3),
                }
            )
    return rows


COLUMNS = [
    ("fixture", "fixture", 18), ("audio s", "audio_s", 9), ("in-process s", "in_process_s", 14),
    ("through /ws s", "end_to_end_s", 15), ("ratio", "ratio", 8), ("WER", "wer", 7),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="ws:// URL of a running service's /ws (default: start one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="workers when the bench starts the service")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--fixtures", default="jfk,osr_us_000_0034")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    fixtures = [f for f in args.fixtures.split(",") if f]

    with service(args.server, workers=args.workers, env={"S2T_MODEL": args.model}) as ws_url:
        rows = run(ws_url, fixtures, args.runs, args.model, args.workers)
    print(f"machine: {machine()}; model {args.model}; {args.workers} worker(s); median of {args.runs} runs")
    print_table(rows, COLUMNS)
    write_report(args.json, rows, model=args.model, workers=args.workers)


if __name__ == "__main__":
    main()
