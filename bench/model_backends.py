"""Model backends side by side: load time and memory per model and backend, and
transcription time per backend on the speech fixtures.

Each (model, backend) pair runs in a fresh subprocess so that one pair's memory and
warm caches never flatter the next: the child imports the backend, notes its RSS, loads
the model through the same resolver the workers use (``load_transcriber``), notes the
RSS again (the difference is what the model costs a worker), then transcribes every
fixture the model can handle (English-only models skip German), once to warm up and
then ``--runs`` times, reporting the median.

    .venv/bin/python -m bench.model_backends [--models tiny.en,base] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

from bench.common import machine, write_report
from shared.models import BACKENDS, installed_backends

_IMPORTS = {"faster-whisper": ("faster_whisper",), "openai-whisper": ("torch", "whisper")}


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def measure(model: str, backend: str, runs: int, threads: int) -> dict[str, Any]:
    """Runs in the child process."""
    import importlib

    from tests.helpers import fixture_audio, manifest, wer
    from whisper_service.backends import DecodeOptions, load_transcriber

    t0 = time.perf_counter()
    for module in _IMPORTS[backend]:
        importlib.import_module(module)
    import_s = time.perf_counter() - t0
    before = _rss_mb()
    t0 = time.perf_counter()
    transcriber = load_transcriber(
        f"{model}@{backend}", device="cpu", compute_type="default", cpu_threads=threads
    )
    load_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "model": model,
        "backend": backend,
        "import_s": round(import_s, 2),
        "load_s": round(load_s, 2),
        "rss_before_mb": round(before),
        "rss_delta_mb": round(_rss_mb() - before),
        "fixtures": [],
    }
    for item in manifest().values():
        if item["language"] not in transcriber.languages:
            continue
        audio = fixture_audio(item["id"])
        options = DecodeOptions(language=item["language"], beam_size=5)
        text = transcriber.transcribe(audio, options).text  # warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            text = transcriber.transcribe(audio, options).text
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        row["fixtures"].append(
            {
                "fixture": item["id"],
                "audio_s": round(len(audio) / 16000, 1),
                "median_s": round(seconds, 2),
                "rtf": round(seconds / (len(audio) / 16000), 3),
                "wer": round(wer(item["reference"], text), 3),
            }
        )
    return row


def _child(model: str, backend: str, runs: int, threads: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.model_backends",
        "--one",
        model,
        backend,
        "--runs",
        str(runs),
        "--threads",
        str(threads),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"model": model, "backend": backend, "error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_tables(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':<10}{'backend':<16}{'import s':>9}{'load s':>8}{'RSS +MB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<10}{r['backend']:<16} failed: {r['error']}")
            continue
        print(f"{r['model']:<10}{r['backend']:<16}{r['import_s']:>9}{r['load_s']:>8}{r['rss_delta_mb']:>9}")
    print()
    print(f"{'fixture':<19}{'audio s':>8}  {'model':<9}{'backend':<16}{'median s':>9}{'RTF':>7}{'WER':>7}")
    for r in rows:
        for f in r.get("fixtures", []):
            print(
                f"{f['fixture']:<19}{f['audio_s']:>8}  {r['model']:<9}{r['backend']:<16}"
                f"{f['median_s']:>9}{f['rtf']:>7}{f['wer']:>7}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each backend")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.runs, args.threads)))
        return
    installed = installed_backends()
    backends = [b for b in args.backends.split(",") if b]
    for missing in [b for b in backends if b not in installed]:
        print(f"backend {missing} is not installed here; skipped", file=sys.stderr)
    rows = [
        _child(model, backend, args.runs, args.threads)
        for model in args.models.split(",")
        for backend in backends
        if backend in installed
    ]
    print(f"machine: {machine()}; {args.threads} threads per backend; CPU; median of {args.runs} runs")
    print_tables(rows)
    write_report(args.json, rows, threads=args.threads)


if __name__ == "__main__":
    main()
