"""Live capacity: offer N real-time streams at once and see which the pool admits, how
the admitted ones fare, and how fast the others hear ``busy``.

Against ``whisper-appliance up`` (2 workers by default, loopback, its own Redis) the
bench offers, for each N in ``--streams`` (default 1, 4, 8, 16, 32), N ``/ws`` clients
that all send ``start_real_recording`` at the same moment. Each admitted one streams a
conversation in real time as 250 ms WebM chunks: the speech regions the splitter's VAD
finds in the English fixtures (jfk, the OSR list), joined with 1.5 s of silence. Per N it
prints:

- admitted, refused (``busy``), and the p95 time from asking to the refusal;
- settled latency p50/p95: from sending the chunk that holds the end of an utterance's
  speech to receiving its final; max lag: the largest of these over all admitted streams
  (how far results fell behind the audio);
- first text p50/p95: from sending the chunk that holds an utterance's first speech to
  its first text with words in it (partial or final; an empty partial shows nothing);
- WER of the admitted streams' finals against the fixtures' references (streams that
  ended), lost: utterances of admitted streams answered with an error;
- each service's CPU (cores used over the run: CPU seconds / wall seconds) and its RSS
  after the run (``bench.memory``).

All N streams speak the same conversation. By default they speak it in step, so every
utterance of every stream ends at the same moment and its N finals reach the pool at once:
the worst burst N streams can make, not what N people talking do. ``--stagger S`` starts
stream i's audio i/N of S seconds after the shared admission (with S about one utterance
plus its pause, 5 s here, the streams' utterance ends spread over the cycle).

Between two N the bench waits until the pool has no admitted stream and no waiting job.
``--kill-worker-after S`` SIGKILLs one worker S seconds into the largest N's run and
records the pool's live figures just after and whether a new stream asking then is
refused; ``lost`` then says whether an admitted stream lost an utterance.

    .venv/bin/python -m bench.live_capacity [--streams 1,4,8,16,32] [--workers 2]
        [--fixtures jfk,osr_us_000_0034] [--kill-worker-after 20] [--stagger 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import psutil
from websockets.sync.client import connect

from audio_service.segmenter import SegmenterOptions
from audio_service.splitter import speech_regions
from bench.common import Running, live_latencies, machine, print_table, running_stack, write_report
from bench.memory import rss_by_role
from tests.helpers import chunk_stream, finals, fixture_pcm, manifest, pcm_to_webm, recv_json, send_json, wer

CHUNK_S = 0.25
PAUSE_S = 1.5
TAIL_S = SegmenterOptions().tail_s
PREROLL_S = SegmenterOptions().preroll_s
FIXTURES = ("jfk", "osr_us_000_0034")
#: What the bench lifts so that only live admission limits it (recorded in the report).
BENCH_ENV = {"S2T_RATE_LIMIT_PER_MINUTE": "0", "S2T_MAX_CLIENTS": "200", "S2T_MAX_QUEUE_LENGTH": "100000"}


def conversation(fixtures: list[str]) -> tuple[list[bytes], float, str]:
    """The fixtures' speech regions one after another with 1.5 s pauses, as WebM chunks;
    its length in seconds and the reference text."""
    pause = np.zeros(int(PAUSE_S * 16000), dtype=np.int16)
    parts: list[np.ndarray] = []
    for fixture in fixtures:
        pcm = fixture_pcm(fixture)
        for start, end in speech_regions(pcm.astype(np.float32) / 32768.0):
            parts += [pause, pcm[start:end]]
    audio = np.concatenate([*parts[1:], pause])
    reference = " ".join(manifest()[f]["reference"] for f in fixtures)
    return chunk_stream(pcm_to_webm(audio), len(audio) / 16000, CHUNK_S), len(audio) / 16000, reference


@dataclass
class StreamRun:
    admitted: bool = False
    answered_s: float | None = None  # start_real_recording -> its answer
    refusal: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # since the first chunk
    ended: bool = False


def one_stream(
    ws_url: str, chunks: list[bytes], go: threading.Event, out: StreamRun, timeout: float, lead_s: float = 0.0
) -> None:
    """``lead_s``: how long the admitted stream waits before its first chunk."""
    with connect(ws_url, max_size=None, open_timeout=30) as ws:
        go.wait()
        t_ask = time.monotonic()
        send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
        answer = recv_json(ws, timeout=30)
        out.answered_s = time.monotonic() - t_ask
        if answer.get("recording") is not True:
            out.refusal = answer
            return
        out.admitted = True
        time.sleep(lead_s)
        done = threading.Event()
        t0 = time.monotonic()

        def reader() -> None:
            while not done.is_set():
                try:
                    message = recv_json(ws, timeout=timeout)
                except Exception:
                    return
                out.messages.append(message)
                out.received_at.append(time.monotonic() - t0)
                if message.get("recording") is False:
                    done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        for i, chunk in enumerate(chunks):
            ws.send(chunk)
            if (delay := t0 + (i + 1) * CHUNK_S - time.monotonic()) > 0:
                time.sleep(delay)
        send_json(ws, {"command": "stop_recording"})
        out.ended = done.wait(timeout)
        thread.join(1)


def latencies(run: StreamRun) -> tuple[list[float], list[float]]:
    """Settled and first-text latencies of one admitted stream (see the module docstring)."""
    return live_latencies(run.messages, run.received_at, chunk_s=CHUNK_S, tail_s=TAIL_S, preroll_s=PREROLL_S)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def processes(running: Running) -> dict[str, list[psutil.Process]]:
    """The stack's processes by service (as ``bench.memory`` names them), children included."""
    up = psutil.Process(running.up_pid)
    out: dict[str, list[psutil.Process]] = {"redis": [psutil.Process(running.redis_pid)]}
    workers = 0
    for child in up.children(recursive=False):
        with contextlib.suppress(psutil.NoSuchProcess):
            cmdline = child.cmdline()
            role = (
                cmdline[cmdline.index("whisper_appliance.cli") + 1]
                if "whisper_appliance.cli" in cmdline
                else ""
            )
            if role == "worker":
                role, workers = f"worker-{workers}", workers + 1
            out[role or child.name()] = [child, *child.children(recursive=True)]
    return out


def cpu_seconds(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds per service; a service whose main process is gone (a killed worker) is left out."""
    out: dict[str, float] = {}
    for role, group in procs.items():
        if not group[0].is_running():
            continue
        total = 0.0
        for p in group:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        out[role] = total
    return out


def settle(base_url: str, timeout: float = 120.0) -> None:
    """Until no live stream is admitted and no job waits (the previous N's tail is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{base_url}/api/status", timeout=10).json()
        if (status.get("live") or {}).get("streams", 0) == 0 and not any(status["queue_depth"].values()):
            return
        time.sleep(0.5)


def kill_a_worker_later(running: Running, after_s: float, out: dict[str, Any]) -> threading.Thread:
    """SIGKILL one worker ``after_s`` into the run (``up`` starts it again), and note the
    pool's live figures right after, and whether a stream asking then is refused."""

    def kill() -> None:
        time.sleep(after_s)
        worker = next(
            p for role, ps in processes(running).items() if role.startswith("worker") for p in ps[:1]
        )
        worker.kill()
        out["killed_pid"] = worker.pid
        time.sleep(1.0)
        out["live_after_kill"] = httpx.get(f"{running.base_url}/api/status", timeout=10).json()["live"]
        with connect(running.ws_url) as ws:
            send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
            answer = recv_json(ws, timeout=30)
            out["new_stream_after_kill"] = answer.get("code") or (
                "admitted" if answer.get("recording") else "?"
            )

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def offer(
    running: Running,
    count: int,
    chunks: list[bytes],
    reference: str,
    timeout: float,
    kill_after_s: float | None = None,
    stagger_s: float = 0.0,
) -> dict[str, Any]:
    settle(running.base_url)
    live_before = httpx.get(f"{running.base_url}/api/status", timeout=10).json()["live"]
    procs = processes(running)
    cpu0, t0 = cpu_seconds(procs), time.monotonic()
    go = threading.Event()
    runs = [StreamRun() for _ in range(count)]
    threads = [
        threading.Thread(
            target=one_stream, args=(running.ws_url, chunks, go, run, timeout, stagger_s * i / count)
        )
        for i, run in enumerate(runs)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)  # every client connected
    go.set()
    kill: dict[str, Any] = {}
    killer = kill_a_worker_later(running, kill_after_s, kill) if kill_after_s is not None else None
    for t in threads:
        t.join()
    if killer is not None:
        killer.join(60)
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(procs)
    admitted = [r for r in runs if r.admitted]
    refused = [r for r in runs if not r.admitted]
    settled = [x for r in admitted for x in latencies(r)[0]]
    first = [x for r in admitted for x in latencies(r)[1]]
    ended = [r for r in admitted if r.ended]
    errors = [wer(reference, " ".join(f["transcript"] for f in finals(r.messages))) for r in ended]
    lost = sum(1 for r in admitted for m in r.messages if m.get("type") == "error" and m.get("utterance_id"))
    return {
        "offered": count,
        "admitted": len(admitted),
        "refused": len(refused),
        "refusal_codes": sorted({str((r.refusal or {}).get("code")) for r in refused}),
        "refusal_p95_s": pct([r.answered_s for r in refused if r.answered_s is not None], 95),
        "ended": len(ended),
        "finals": len(settled),
        "lost": lost,
        "settled_p50_s": pct(settled, 50),
        "settled_p95_s": pct(settled, 95),
        "max_lag_s": round(max(settled), 2) if settled else None,
        "first_text_p50_s": pct(first, 50),
        "first_text_p95_s": pct(first, 95),
        "wer": round(statistics.mean(errors), 3) if errors else None,
        "capacity_before": live_before,
        **({"worker_kill": kill} if kill else {}),
        # None: the service's process died during the run (its replacement is not counted).
        "cpu_cores": {
            role: round((cpu1[role] - cpu0[role]) / wall, 2) if role in cpu1 else None for role in cpu0
        },
        "rss_mb": rss_by_role(running),
    }


COLUMNS = [
    ("offered", "offered", 8), ("admit", "admitted", 6), ("refused", "refused", 8),
    ("busy p95", "refusal_p95_s", 9), ("ended", "ended", 6), ("lost", "lost", 5),
    ("settled p50", "settled_p50_s", 12), ("p95", "settled_p95_s", 6), ("max lag", "max_lag_s", 8),
    ("1st text p50", "first_text_p50_s", 13), ("p95", "first_text_p95_s", 6), ("WER", "wer", 7),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", default="1,4,8,16,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument(
        "--fixtures", default=",".join(FIXTURES), help="English fixtures the conversation is cut from"
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="how long a stream waits after its audio")
    parser.add_argument(
        "--kill-worker-after",
        type=float,
        help="SIGKILL one worker this many seconds into the largest N's run",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="stream i of N starts its audio i/N of this many seconds after admission (0: all at once)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    counts = [int(c) for c in args.streams.split(",")]
    chunks, audio_s, reference = conversation(args.fixtures.split(","))
    env = {**BENCH_ENV, "S2T_MODEL": args.model}
    rows = []
    with running_stack(workers=args.workers, env=env) as running:
        for count in counts:
            kill_after = args.kill_worker_after if count == max(counts) else None
            rows.append(offer(running, count, chunks, reference, args.timeout, kill_after, args.stagger))
            print(rows[-1], flush=True)
    print(
        f"machine: {machine()}; model {args.model}; {args.workers} worker(s); "
        f"conversation {audio_s:.1f} s ({args.fixtures}), real time, stagger {args.stagger:g} s"
    )
    print_table(rows, COLUMNS)
    for row in rows:
        cpu = ", ".join(f"{role} {cores}" for role, cores in row["cpu_cores"].items())
        rss = ", ".join(f"{role} {mb}" for role, mb in row["rss_mb"].items())
        print(f"N={row['offered']}: capacity before {row['capacity_before']}")
        print(f"  CPU cores: {cpu}\n  RSS MB: {rss}")
        if "worker_kill" in row:
            print(f"  worker killed: {row['worker_kill']}")
    write_report(
        args.json, rows, model=args.model, workers=args.workers, bench_env=BENCH_ENV, stagger_s=args.stagger
    )


if __name__ == "__main__":
    main()
