"""Load: N concurrent clients (default 50) send the speech fixtures as files over /ws
against ``whisper-appliance up`` on loopback (or ``--server``), and the script reports

- files sent vs completed, pieces queued vs final transcripts received (must be equal),
- errors by code,
- latency per file (send -> "Processing complete") and per final (its ``latency_ms``),
  as percentiles,
- the gateway's RSS (from ``/health``) when cold, at its peak and after the clients
  left, per round; growth from the end of the first round to the end of the last must
  stay within ``RSS_GROWTH_BOUND_MB`` (the first round lifts it to its working size).

Bounded: ``--rounds`` x ``--clients`` x ``--files`` files, one at a time per client,
and ``--timeout`` seconds per round.

    .venv/bin/python -m bench.load [--clients 50] [--files 1] [--workers 2] [--server ws://…/ws]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from bench.common import service
from tests.helpers import fixture_bytes, manifest

#: Growth of the gateway's RSS after every client left that counts as a leak.
RSS_GROWTH_BOUND_MB = 30.0


@dataclass
class Tally:
    files_sent: int = 0
    files_completed: int = 0
    pieces_queued: int = 0
    finals: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    file_latency_s: list[float] = field(default_factory=list)
    final_latency_ms: list[float] = field(default_factory=list)


async def one_client(ws_url: str, index: int, files: int, fixtures: list[str], tally: Tally) -> None:
    async with connect(ws_url, max_size=None, open_timeout=30) as ws:
        for n in range(files):
            fixture = fixtures[(index + n) % len(fixtures)]
            request_id = f"c{index}-{n}"
            audio = base64.b64encode(fixture_bytes(fixture)).decode()
            t0 = time.monotonic()
            await ws.send(
                json.dumps({"command": "process_audio", "audio_data": audio, "request_id": request_id})
            )
            tally.files_sent += 1
            while True:
                message = json.loads(await ws.recv())
                if message.get("request_id") not in (request_id, None):
                    continue
                kind = message.get("type")
                if kind == "status" and message.get("message") == "Audio queued":
                    tally.pieces_queued += int(message.get("pieces", 0)) or 1  # no speech: one final
                elif kind == "transcript" and message.get("final"):
                    tally.finals += 1
                    tally.final_latency_ms.append(float(message.get("latency_ms", 0)))
                elif kind == "error":
                    tally.errors[str(message.get("code"))] += 1
                    if message.get("utterance_id") is None:  # the whole file was refused
                        break
                elif kind == "status" and message.get("message") == "Processing complete":
                    tally.files_completed += 1
                    tally.file_latency_s.append(time.monotonic() - t0)
                    break


def gateway_rss_mb(base_url: str) -> float:
    return float(httpx.get(f"{base_url}/health", timeout=10).json()["memory_usage"]["rss_mb"])


async def one_round(ws_url: str, base_url: str, clients: int, files: int, timeout: float) -> dict[str, Any]:
    fixtures = sorted(manifest())
    tally = Tally()
    peak = [gateway_rss_mb(base_url)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(httpx.HTTPError):
                peak.append(gateway_rss_mb(base_url))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    tasks = [asyncio.create_task(one_client(ws_url, i, files, fixtures, tally)) for i in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    failures = [repr(t.exception()) for t in done if t.exception() is not None]
    wall_s = time.monotonic() - t0
    stop.set()
    sampler.join(5)
    await asyncio.sleep(5.0)  # let the gateway drop the closed sessions

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 3) if values else float("nan")

    return {
        "wall_s": round(wall_s, 1),
        "timed_out_clients": len(pending),
        "client_failures": failures[:5],
        "files_sent": tally.files_sent,
        "files_completed": tally.files_completed,
        "pieces_queued": tally.pieces_queued,
        "finals_received": tally.finals,
        "errors_by_code": dict(tally.errors),
        "file_latency_s": {q: pct(tally.file_latency_s, q) for q in (50, 90, 95, 99)},
        "final_latency_ms": {q: pct(tally.final_latency_ms, q) for q in (50, 90, 95, 99)},
        "gateway_rss_peak_mb": max(peak),
        "gateway_rss_after_mb": gateway_rss_mb(base_url),
    }


async def run(
    ws_url: str, base_url: str, clients: int, files: int, timeout: float, rounds: int
) -> dict[str, Any]:
    """``rounds`` identical rounds. The first one lifts the gateway to its working size
    (allocator arenas, buffers for 50 base64 files, imported code paths: memory that
    CPython and glibc keep, not a leak); growth from the end of round 1 to the end of
    the last round is what a leak would show, and is held against the bound."""
    # Warm-up: one file through the whole pipeline, so "cold" is a served gateway.
    await one_client(ws_url, 0, 1, sorted(manifest()), Tally())
    cold = gateway_rss_mb(base_url)
    results = [await one_round(ws_url, base_url, clients, files, timeout) for _ in range(rounds)]
    after = [r["gateway_rss_after_mb"] for r in results]
    return {
        "clients": clients,
        "files_per_client": files,
        "rounds": results,
        "gateway_rss_cold_mb": cold,
        "rss_growth_after_first_round_mb": round(after[-1] - after[0], 1),
        "rss_growth_bound_mb": RSS_GROWTH_BOUND_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--files", type=int, default=1, help="files per client, sent one after another")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="per round")
    parser.add_argument(
        "--rounds", type=int, default=2, help="the first lifts the gateway to its working size"
    )
    parser.add_argument("--server", help="ws://host:port/ws of a running gateway (default: start one)")
    args = parser.parse_args()

    with service(args.server, workers=args.workers) as ws_url:
        base_url = ws_url.replace("ws://", "http://", 1).removesuffix("/ws")
        report = asyncio.run(run(ws_url, base_url, args.clients, args.files, args.timeout, args.rounds))
    print(json.dumps(report, indent=2))
    ok = (
        all(
            r["finals_received"] == r["pieces_queued"]
            and r["files_completed"] == r["files_sent"] == args.clients * args.files
            for r in report["rounds"]
        )
        and report["rss_growth_after_first_round_mb"] <= RSS_GROWTH_BOUND_MB
    )
    print("OK" if ok else "NOT OK: transcripts lost, files unfinished, or gateway memory grew past the bound")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
