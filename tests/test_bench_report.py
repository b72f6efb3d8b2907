"""The benchmark suite's report writer (bench/report.py): the JSON keeps every figure,
the PNG is a real image, and a report with sections missing or failed still plots
(a suite cut short by its time budget must still leave something to look at)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report
from bench.throughput import batching_speedup

pytest.importorskip("matplotlib", reason="the plot needs the optional `bench` extra")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def throughput_row(workers: int, batch: int, clients: int, rate: float) -> dict[str, object]:
    return {
        "workers": workers, "batch_size": batch, "clients": clients, "utterances_per_s": rate,
        "audio_s_per_s": rate * 4, "latency_p50_s": 1.0, "latency_p95_s": 2.0, "errors": 0,
    }  # fmt: skip


FULL_REPORT = {
    "machine": "test 2 cores",
    "model": "tiny.en",
    "quick": True,
    "sections": {
        "overhead": {"rows": [{"fixture": "jfk", "audio_s": 11.0, "ratio": 1.08}]},
        "throughput": {
            "rows": [
                throughput_row(w, b, c, w * c * (1.8 if b > 1 else 1.0) / (c + 1))
                for w in (1, 2)
                for b in (1, 8)
                for c in (1, 8, 32)
            ],
            "batching_speedup_at_32": {"1": 1.8, "2": 1.8},
        },
        "live": {
            "workers": 2,
            "rows": [
                {
                    "streams": 1,
                    "final_median_s": 0.9,
                    "final_p95_s": 1.3,
                    "first_partial_median_s": 1.6,
                    "first_partial_p95_s": None,
                },
            ],
        },
        "memory": {
            "stacks": [
                {
                    "name": "a",
                    "idle": {"gateway": 60.0, "worker-0": 300.0, "redis": 8.0},
                    "after_load": {"gateway": 90.0, "worker-0": 320.0, "redis": 9.0},
                },
            ]
        },
        "accuracy": {
            "rows": [
                {"fixture": "jfk", "model": "tiny.en", "offline": 0.0, "file": 0.0, "live": 0.091},
                {"fixture": "thorsten_gt_03", "model": "base", "offline": 0.0, "file": 0.0, "live": 0.0},
            ]
        },
    },
}


def test_report_writes_json_and_png(tmp_path: Path) -> None:
    json_path, png_path = report.write(FULL_REPORT, tmp_path / "out")
    assert json.loads(json_path.read_text()) == FULL_REPORT
    data = png_path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 30_000  # five drawn panels, not a blank canvas


def test_partial_report_still_plots(tmp_path: Path) -> None:
    partial = {"machine": "m", "sections": {"overhead": {"error": "RuntimeError: up did not start"}}}
    _, png_path = report.write(partial, tmp_path)
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)


def test_batching_speedup_compares_on_to_off_at_32_clients() -> None:
    rows = FULL_REPORT["sections"]["throughput"]["rows"]  # type: ignore[index]
    assert batching_speedup(rows) == {1: 1.8, 2: 1.8}
    assert batching_speedup([r for r in rows if r["batch_size"] == 1]) == {}
