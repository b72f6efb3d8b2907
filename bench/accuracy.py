"""How close does the service come to the same model run offline? Per fixture, WER of

- ``offline``: faster-whisper in this process on the whole file, the way a user runs it
  offline (``WhisperModel(...).transcribe(audio, language=...)`` with faster-whisper's own
  defaults: beam 5, timestamp tokens, the temperature fallback, conditioning on previous
  text), same weights and compute type (int8 on a CPU) as the service's workers;
- ``file``: the fixture's own bytes over the HTTP API (``POST /v1/audio/transcriptions``,
  ``response_format=json``);
- ``live``: the fixture streamed over ``/ws`` as 250 ms WebM/Opus chunks (what a browser
  sends), its finals joined.

English fixtures with ``tiny.en``, German (``thorsten_*``) with the bundled ``base``. Each
configuration (``--configs``: a set of ``S2T_*`` variables, :data:`CONFIGS`) gets a
``whisper-appliance up`` of its own; ``before`` is the decoding before issue 15 (files with
timestamp tokens, temperature fallback everywhere), ``after`` today's defaults.

WER per fixture after ``tests.helpers.normalize`` (lower case, punctuation dropped), the
same for every system; numbers are not normalised ("4 hours" against "four hours" is an
error), as in ``bench.decode_settings`` (whose docstring says why). The fixtures'
references spell no numbers.

Live streams are sent in real time by default (``--speed 1``). The live segmenter cuts in
the stream's own time, not wall-clock time, so a faster ``--speed`` gives the same cuts
and, the decoding being deterministic, the same finals (``--speed 4`` is what
``tests/test_accuracy_bounds.py`` uses); the bench checks that claim when given
``--speed 1,4`` (a ``speed`` column per row).

    nice -n 10 .venv/bin/python -m bench.accuracy [--configs before,after] [--fixtures jfk,...]
        [--speed 1] [--report out.json]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
from websockets.sync.client import connect

from bench.common import machine, print_table, running_stack, write_report
from shared.config import cpu_count
from tests.helpers import (
    chunk_stream,
    fixture_bytes,
    fixture_pcm,
    joined_text,
    load_model,
    manifest,
    pcm_to_webm,
    stream_live,
    wer,
)

CHUNK_S = 0.25

#: Which model each fixture language is measured with.
MODELS = {"en": "tiny.en", "de": "base"}

#: Service configurations to compare: ``S2T_*`` variables for ``whisper-appliance up``.
CONFIGS: dict[str, dict[str, str]] = {
    # before issue 15: files decoded with timestamp tokens, temperature fallback everywhere
    "before": {
        "S2T_FILE_TIMESTAMPS": "always",
        "S2T_TEMPERATURE_FALLBACK": "true",
        "S2T_PARTIAL_TEMPERATURE_FALLBACK": "true",
    },
    "after": {},  # today's defaults
}

#: Lifted for the bench, as the other benchmarks do: one client sends many messages.
BENCH_ENV = {"S2T_RATE_LIMIT_PER_MINUTE": "0"}


def model_for(fixture_id: str) -> str:
    return MODELS[manifest()[fixture_id]["language"]]


def _floats(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


class Offline:
    """faster-whisper in this process, one ``WhisperModel`` per model name, defaults as a
    user gets them; the same weights and compute type the workers load."""

    def __init__(self, threads: int = cpu_count()) -> None:
        self.threads = threads
        self._models: dict[str, Any] = {}

    def _model(self, name: str) -> Any:
        if name not in self._models:
            from faster_whisper import WhisperModel

            from shared.models import materialize
            from whisper_service.backends.faster_whisper_backend import resolve_compute_type

            self._models[name] = WhisperModel(
                materialize(name), device="cpu", compute_type=resolve_compute_type("default", "cpu"),
                cpu_threads=self.threads,
            )  # fmt: skip
        return self._models[name]

    def transcribe(self, fixture_id: str) -> str:
        item = manifest()[fixture_id]
        segments, _ = self._model(model_for(fixture_id)).transcribe(
            _floats(fixture_pcm(fixture_id)), language=item["language"]
        )
        return " ".join(s.text.strip() for s in segments).strip()


def over_http(base_url: str, fixture_id: str, *, headers: dict[str, str] | None = None) -> str:
    item = manifest()[fixture_id]
    response = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": (item["path"], fixture_bytes(fixture_id))},
        data={"model": model_for(fixture_id), "language": item["language"], "response_format": "json"},
        headers=headers,
        timeout=300,
    )
    response.raise_for_status()
    return str(response.json()["text"]).strip()


def live_chunks(fixture_id: str) -> list[bytes]:
    pcm = fixture_pcm(fixture_id)
    return chunk_stream(pcm_to_webm(pcm), len(pcm) / 16000, CHUNK_S)


def over_ws(ws_url: str, fixture_id: str, *, speed: float = 1.0) -> str:
    item = manifest()[fixture_id]
    with connect(ws_url, max_size=None) as ws:
        result = stream_live(
            ws, live_chunks(fixture_id), chunk_s=CHUNK_S, speed=speed, language=item["language"],
            model=model_for(fixture_id), timeout=300,
        )  # fmt: skip
    return joined_text(result.messages).strip()


def warm(ws_url: str, models: set[str]) -> None:
    """Load every model on every worker first, so no row pays a model load."""
    with connect(ws_url, max_size=None) as ws:
        for name in sorted(models):
            replies = load_model(ws, name, timeout=600)
            if replies[-1].get("type") != "model_loaded":
                raise RuntimeError(f"{name} did not load: {replies[-1]}")


@contextlib.contextmanager
def stack_for(config: str, workers: int) -> Iterator[tuple[str, str]]:
    env = {**BENCH_ENV, "S2T_MODEL": "tiny.en", **CONFIGS[config]}
    with running_stack(workers=workers, env=env) as running:
        yield running.base_url, running.ws_url


def offline_rows(fixtures: list[str], offline: Offline) -> dict[str, tuple[str, float]]:
    texts = {f: offline.transcribe(f) for f in fixtures}
    return {f: (text, round(wer(manifest()[f]["reference"], text), 3)) for f, text in texts.items()}


def run_config(
    config: str,
    base_url: str,
    ws_url: str,
    fixtures: list[str],
    offline: dict[str, tuple[str, float]],
    speeds: list[float],
    on_row: Callable[[dict[str, Any]], None] = print,
) -> list[dict[str, Any]]:
    """One row per fixture and live speed: offline, file and live WER and their texts."""
    warm(ws_url, {model_for(f) for f in fixtures})
    rows = []
    for fixture_id in fixtures:
        reference = manifest()[fixture_id]["reference"]
        file_text = over_http(base_url, fixture_id)
        for speed in speeds:
            live_text = over_ws(ws_url, fixture_id, speed=speed)
            offline_text, offline_wer = offline[fixture_id]
            row = {
                "config": config,
                "fixture": fixture_id,
                "model": model_for(fixture_id),
                "speed": speed,
                "offline": offline_wer,
                "file": round(wer(reference, file_text), 3),
                "live": round(wer(reference, live_text), 3),
                "texts": {"offline": offline_text, "file": file_text, "live": live_text},
            }
            row["file_minus_offline"] = round(row["file"] - offline_wer, 3)
            row["live_minus_offline"] = round(row["live"] - offline_wer, 3)
            rows.append(row)
            on_row(row)
    return rows


def run(
    configs: list[str],
    fixtures: list[str],
    *,
    workers: int = 2,
    speeds: list[float] | None = None,
    on_row: Callable[[dict[str, Any]], None] = print,
) -> list[dict[str, Any]]:
    offline = offline_rows(fixtures, Offline())
    rows: list[dict[str, Any]] = []
    for config in configs:
        with stack_for(config, workers) as (base_url, ws_url):
            rows += run_config(config, base_url, ws_url, fixtures, offline, speeds or [1.0], on_row)
    return rows


COLUMNS = [
    ("config", "config", 8), ("fixture", "fixture", 19), ("model", "model", 9), ("speed", "speed", 6),
    ("offline", "offline", 9), ("file", "file", 7), ("live", "live", 7),
    ("file-off", "file_minus_offline", 10), ("live-off", "live_minus_offline", 10),
]  # fmt: skip


def print_rows(rows: list[dict[str, Any]]) -> None:
    print_table(rows, COLUMNS)
    for row in rows:
        print(f"  {row['config']} {row['fixture']} x{row['speed']}: {row['texts']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"from {','.join(CONFIGS)}")
    parser.add_argument("--fixtures", default="", help="comma-separated ids (default: every fixture)")
    parser.add_argument("--speed", default="1", help="live pacing, comma-separated (1: real time)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", help="write the rows (and every transcript) as JSON here")
    args = parser.parse_args()
    fixtures = [f for f in args.fixtures.split(",") if f] or list(manifest())
    configs = [c for c in args.configs.split(",") if c]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configs {sorted(unknown)}; choose from {','.join(CONFIGS)}")
    speeds = [float(s) for s in args.speed.split(",")]
    rows = run(configs, fixtures, workers=args.workers, speeds=speeds, on_row=lambda r: print(r, flush=True))
    print(
        f"machine: {machine()}; {args.workers} workers; WER per fixture, tests.helpers.normalize, "
        "numbers not normalised; offline: faster-whisper defaults in-process, same weights"
    )
    print_rows(rows)
    write_report(args.report, rows, configs=configs, workers=args.workers, speeds=speeds)


if __name__ == "__main__":
    main()
