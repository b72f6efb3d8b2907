"""Throughput: closed-loop clients over /ws sending utterance-length files.

Each client sends one utterance (2–6 s of speech cut from the fixtures at pauses,
``bench.utterances``) as ``process_audio``, waits for its "Processing complete", and
sends the next: a closed loop, so the offered load is exactly ``clients`` requests in
flight. Once every client has had a reply (steady state) and at least ``--warmup``
seconds have passed, completions inside a fixed window are counted: utterances per
second, audio seconds per second, latency p50/p95 (send -> complete), errors.

Measured for every workers x batching x clients combination; ``up`` is restarted per
(workers, batching) pair (``S2T_BATCH_SIZE=1`` is one job at a time, ``8`` lets a
worker batch up to eight) and kept across client counts. The gateway's per-connection
rate limit, queue and client limits are lifted for the bench (``BENCH_ENV``): a
closed-loop client on a fast worker sends more than 100 messages a minute, which the
limit would refuse by design.

    .venv/bin/python -m bench.throughput [--workers 1,2,4] [--batch 1,8] [--clients 1,8,32]
                                         [--window 30] [--warmup 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from bench.common import machine, print_table, running_stack, write_report
from bench.memory import MemoryLog, watching
from bench.utterances import Utterance, cut

#: Limits lifted for the bench (they protect the service from abusive clients, which
#: closed-loop bench clients would look like); said so in every report.
BENCH_ENV = {
    "S2T_RATE_LIMIT_PER_MINUTE": "0",
    "S2T_MAX_QUEUE_LENGTH": "100000",
    "S2T_MAX_CLIENTS": "200",
}
FIXTURES = ["jfk", "osr_us_000_0034"]
REPLY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Timing:
    """The time box of one client count: warm-up, window, and (``drain``) one reply
    timeout at most for the requests in flight afterwards."""

    warmup_s: float = 5.0  # the window opens no earlier than this
    window_s: float = 30.0
    max_warmup_s: float = 60.0  # ... and no later than this, even if a client had no reply yet


@dataclass(frozen=True)
class Sample:
    sent: float
    done: float
    audio_s: float
    error: str | None


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


@dataclass
class Window:
    """The measurement window, known only once the loop is warm: it opens when every
    client has had one reply (the queue then holds its steady-state depth; with 32
    clients on one worker a round trip alone takes many seconds) and ``warmup_s`` has
    passed, and lasts ``window_s``. Clients send until it closes."""

    clients: int
    warmed: asyncio.Event = field(default_factory=asyncio.Event)
    first_replies: int = 0
    start: float = float("inf")
    end: float = float("inf")

    def replied_once(self) -> None:
        self.first_replies += 1
        if self.first_replies == self.clients:
            self.warmed.set()


async def _client(
    ws_url: str, payloads: list[tuple[str, float]], first: int, window: Window, samples: list[Sample]
) -> None:
    async with connect(ws_url, max_size=None, open_timeout=30) as ws:
        n = first
        while time.monotonic() < window.end:
            audio_b64, audio_s = payloads[n % len(payloads)]
            request_id = f"c{first}-{n}"
            n += 1
            sent = time.monotonic()
            message = {
                "command": "process_audio",
                "audio_data": audio_b64,
                "language": "en",
                "request_id": request_id,
            }
            await ws.send(json.dumps(message))
            error = None
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
                if reply.get("request_id") not in (request_id, None):
                    continue
                if reply.get("type") == "error":
                    error = str(reply.get("code"))
                    if reply.get("utterance_id") is None:  # the whole request was refused
                        break
                elif reply.get("type") == "status" and reply.get("message") == "Processing complete":
                    break
            samples.append(Sample(sent, time.monotonic(), audio_s, error))
            if n == first + 1:
                window.replied_once()


async def _measure(
    ws_url: str, utterances: list[Utterance], clients: int, timing: Timing, drain: bool
) -> dict[str, Any]:
    payloads = [(base64.b64encode(u.flac).decode(), u.audio_s) for u in utterances]
    samples: list[Sample] = []
    window = Window(clients)
    start = time.monotonic()
    tasks = [asyncio.create_task(_client(ws_url, payloads, i * 3, window, samples)) for i in range(clients)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(window.warmed.wait(), timing.max_warmup_s)
    window.start = max(time.monotonic(), start + timing.warmup_s)
    window.end = window.start + timing.window_s
    # Requests still in flight when the window closes are waited for (at most one reply
    # timeout) only with ``drain``: left in the queue they would load the next client
    # count; after the last one the stack stops anyway.
    linger = REPLY_TIMEOUT_S if drain else 0.0
    done, pending = await asyncio.wait(tasks, timeout=window.end - time.monotonic() + linger)
    for task in pending:
        task.cancel()
    failures = Counter(type(e).__name__ for t in done if (e := t.exception()) is not None)
    counted = [s for s in samples if window.start <= s.done < window.end]
    ok = [s for s in counted if s.error is None]
    latency = [s.done - s.sent for s in ok]
    return {
        "clients": clients,
        "warmup_s": round(window.start - start, 1),
        "window_s": timing.window_s,
        "utterances": len(ok),
        "utterances_per_s": round(len(ok) / timing.window_s, 3),
        "audio_s_per_s": round(sum(s.audio_s for s in ok) / timing.window_s, 3),
        "latency_p50_s": percentile(latency, 50),
        "latency_p95_s": percentile(latency, 95),
        "errors": len(counted) - len(ok),
        "errors_by_code": dict(Counter(s.error for s in samples if s.error)),
        "client_failures": dict(failures),
        "clients_in_flight_at_end": len(pending),
    }


def measure(
    ws_url: str, utterances: list[Utterance], clients: int, timing: Timing, *, drain: bool = True
) -> dict[str, Any]:
    return asyncio.run(_measure(ws_url, utterances, clients, timing, drain))


def run_stack(
    workers: int,
    batch: int,
    client_counts: list[int],
    *,
    utterances: list[Utterance],
    model: str = "tiny.en",
    timing: Timing = Timing(),
    memory: MemoryLog | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[dict[str, Any]]:
    """One ``up`` with ``workers`` and ``S2T_BATCH_SIZE=batch``, measured at each client
    count while ``keep_going()``; ``memory`` gets its RSS idle and after the load."""
    env = {**BENCH_ENV, "S2T_MODEL": model, "S2T_BATCH_SIZE": str(batch)}
    rows = []
    name = f"throughput stack: {workers} worker(s), S2T_BATCH_SIZE={batch}"
    with running_stack(workers=workers, env=env) as running, watching(memory, name, running):
        for i, clients in enumerate(client_counts):
            if not keep_going():
                break
            last = i == len(client_counts) - 1
            row = {"workers": workers, "batch_size": batch, **measure(
                running.ws_url, utterances, clients, timing, drain=not last
            )}  # fmt: skip
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def batching_speedup(rows: list[dict[str, Any]], clients: int = 32) -> dict[int, float | None]:
    """Per worker count: utterances/s with batching on (largest batch size measured) over
    batching off (batch size 1), at ``clients`` concurrent clients."""
    out: dict[int, float | None] = {}
    for workers in sorted({r["workers"] for r in rows}):
        at = {r["batch_size"]: r for r in rows if r["workers"] == workers and r["clients"] == clients}
        off, on = at.get(1), at.get(max(at, default=1))
        if off is None or on is None or on is off:
            continue
        out[workers] = (
            round(on["utterances_per_s"] / off["utterances_per_s"], 2) if off["utterances_per_s"] else None
        )
    return out


COLUMNS = [
    ("workers", "workers", 8), ("batch", "batch_size", 6), ("clients", "clients", 8),
    ("utt/s", "utterances_per_s", 8), ("audio s/s", "audio_s_per_s", 10),
    ("p50 s", "latency_p50_s", 8), ("p95 s", "latency_p95_s", 8), ("errors", "errors", 7),
]  # fmt: skip


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--batch", default="1,8", help="S2T_BATCH_SIZE values (1 = batching off)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--window", type=float, default=30.0, help="measurement window per config, s")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    utterances = cut(FIXTURES)
    rows = []
    for workers in ints(args.workers):
        for batch in ints(args.batch):
            rows += run_stack(
                workers, batch, ints(args.clients), utterances=utterances, model=args.model,
                timing=Timing(args.warmup, args.window), on_row=print,
            )  # fmt: skip
    print(f"machine: {machine()}; model {args.model}; limits lifted: {BENCH_ENV}")
    print_table(rows, COLUMNS)
    print(f"batching speed-up at 32 clients, per worker count: {batching_speedup(rows)}")
    write_report(args.json, rows, model=args.model, bench_env=BENCH_ENV)


if __name__ == "__main__":
    main()
