"""Soak with faults: live streams and file clients for a set time while, in turn, a
worker is SIGKILLed, Redis is killed and restarted, the audio service is killed and
restarted, and a client's connection is cut and resumed. It counts what a user would:

- live: utterances the service accepted (the ``finals`` count of "Recording stopped"),
  finals delivered (distinct utterance ids answered by a final), duplicates (an id
  answered twice), lost (accepted but never answered), out of order, WER per recording;
- files: requests sent, answered 200, answered with an error (by code), unanswered,
  WER per transcript;
- errors by code over both, and every service's resident memory at start and end.

A stream that a fault ends (an ``error`` without ``utterance_id``) counts its code under
errors and its utterances as not accepted: the client was told. Anything else missing is
"lost".

Targets (``--target``):

- ``up`` (default): ``whisper-appliance up --workers N`` as users run it, with the Redis
  it embeds (``S2T_REDIS_URL`` points where none answers); faults are signals to its
  children, which ``up`` restarts;
- ``compose``: a running compose stack (``docker compose up -d --scale whisper=2``) at
  ``--server``; faults are SIGKILLs to the containers' main processes from the host (so
  Docker's restart policy, not ``docker kill``'s "stopped by hand", applies).

    nice -n 5 .venv/bin/python -m bench.soak --minutes 20 [--streams 4] [--file-clients 1]
        [--fault-every-s 60] [--target up|compose] [--report soak.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from websockets.sync.client import ClientConnection, connect

from bench.common import machine, print_table, write_report
from bench.memory import MB
from tests.conftest import start_stack, stop_stack
from tests.helpers import chunk_stream, fixture_bytes, fixture_webm, manifest, recv_json, send_json, wer
from whisper_appliance.embedded_redis import free_port

CHUNK_S = 0.25
GAP_S = 3.0  # how long a cut client stays away before it resumes
LIVE_FIXTURES = ("jfk", "osr_us_000_0034")
FILE_FIXTURES = ("osr_us_000_0034", "jfk")
FAULTS = ("worker_kill", "redis_restart", "audio_restart", "client_cut")


# --- what is counted ----------------------------------------------------------------------


@dataclass
class Tally:
    """Shared by every client thread; one lock, since the counts are small."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    recordings: int = 0
    recordings_ended_by_error: int = 0
    recordings_unfinished: int = 0  # neither "Recording stopped" nor an error came
    resumes: int = 0
    accepted: int = 0
    delivered: int = 0
    answered_with_error: int = 0
    duplicates: int = 0
    lost: int = 0
    out_of_order: int = 0
    live_wer: list[float] = field(default_factory=list)
    files_sent: int = 0
    files_ok: int = 0
    files_failed: int = 0
    files_unanswered: int = 0
    file_wer: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    faults: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **counts: Any) -> None:
        with self.lock:
            for name, value in counts.items():
                if isinstance(value, list):
                    getattr(self, name).extend(value)
                else:
                    setattr(self, name, getattr(self, name) + value)

    def error(self, code: str) -> None:
        with self.lock:
            self.errors[code] += 1


def summarise_recording(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One recording's messages (over every connection it had) → counts. Pure, so the
    accounting is checked without a service (tests/test_soak_accounting.py)."""
    answers = [
        m
        for m in messages
        if (m.get("type") == "transcript" and m.get("final"))
        or (m.get("type") == "error" and m.get("utterance_id"))
    ]
    ids = [m["utterance_id"] for m in answers]
    distinct = list(dict.fromkeys(ids))
    # Live utterance ids end in -u<index>; any other id (none is expected) is kept out of
    # the order check and named, rather than failing the whole recording's count.
    indices = [int(i.rsplit("-u", 1)[1]) for i in distinct if i.rsplit("-u", 1)[-1].isdigit()]
    odd_ids = [i for i in distinct if not i.rsplit("-u", 1)[-1].isdigit() or "-u" not in i]
    stopped = next((m for m in messages if m.get("type") == "status" and m.get("recording") is False), None)
    ended_by = next((m for m in messages if m.get("type") == "error" and not m.get("utterance_id")), None)
    accepted = int(stopped["finals"]) if stopped and "finals" in stopped else len(distinct)
    return {
        "accepted": accepted if ended_by is None else len(distinct),
        "delivered": len(distinct),
        "answered_with_error": len({m["utterance_id"] for m in answers if m.get("type") == "error"}),
        "duplicates": len(ids) - len(distinct),
        "lost": max(0, accepted - len(distinct)) if ended_by is None else 0,
        "out_of_order": int(indices != sorted(indices)),
        "errors": [m["code"] for m in messages if m.get("type") == "error"],
        "ended_by": ended_by["code"] if ended_by else None,
        "stopped": stopped is not None,
        "text": " ".join(m["transcript"] for m in answers if m.get("type") == "transcript"),
        "odd_ids": odd_ids,
    }


@functools.cache
def _webm(fixture: str) -> bytes:
    return fixture_webm(fixture)


# --- live clients -------------------------------------------------------------------------


class Reader:
    """Messages of one connection, on a thread, until ``recording: false`` or it dies."""

    def __init__(self, ws: ClientConnection, into: list[dict[str, Any]]) -> None:
        self.messages = into
        self.ended = threading.Event()
        self.dead = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ws,), daemon=True)
        self._thread.start()

    def _run(self, ws: ClientConnection) -> None:
        while True:
            try:
                message = recv_json(ws, timeout=300)
            except Exception:
                self.dead.set()
                return
            self.messages.append(message)
            if message.get("recording") is False:
                self.ended.set()
                return


def cut(ws: ClientConnection) -> None:
    """A network blip: the socket goes, no close frame."""
    with contextlib.suppress(OSError):
        ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()


@dataclass
class LiveClient:
    ws_url: str
    tally: Tally
    stop: threading.Event
    cut_requested: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for fixture in itertools.cycle(LIVE_FIXTURES):
            if self.stop.is_set():
                return
            try:
                self.record(fixture)
            except Exception as exc:  # a connection refused while the gateway restarts, say
                self.tally.error(f"client:{type(exc).__name__}")
                print(f"soak: live client: {exc!r}", file=sys.stderr)
                time.sleep(1.0)

    def record(self, fixture: str) -> None:
        item = manifest()[fixture]
        encoded = _webm(fixture)
        chunks = chunk_stream(encoded, item["duration_s"], CHUNK_S)
        bounds = list(itertools.accumulate(len(c) for c in chunks))
        messages: list[dict[str, Any]] = []
        ws = connect(self.ws_url, max_size=None, open_timeout=10)
        send_json(ws, {"command": "start_real_recording", "language": "en", "format": "webm"})
        started = recv_json(ws, timeout=30)
        if started.get("type") == "error":
            self.tally.error(started["code"])
            ws.close()
            time.sleep(1.0)
            return
        reader = Reader(ws, messages)
        t0 = time.monotonic()
        i = 0
        while i < len(chunks):
            if self.cut_requested.is_set() and 0 < i < len(chunks) - 8:
                self.cut_requested.clear()
                resumed = self._cut_and_resume(started, ws, messages, encoded, bounds, i)
                if resumed is None:  # refused: counted; the recording is over for this client
                    self._count(item["reference"], messages)
                    return
                ws, reader, i = resumed
                t0 = time.monotonic() - i * CHUNK_S
                continue
            if reader.dead.is_set():
                break
            ws.send(chunks[i])
            i += 1
            time.sleep(max(0.0, t0 + i * CHUNK_S - time.monotonic()))
        with contextlib.suppress(Exception):
            send_json(ws, {"command": "stop_recording"})
        deadline = time.monotonic() + 180
        while not (reader.ended.is_set() or reader.dead.is_set()) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(Exception):
            ws.close()
        self._count(item["reference"], messages)

    def _cut_and_resume(
        self,
        started: dict[str, Any],
        ws: ClientConnection,
        messages: list[dict[str, Any]],
        encoded: bytes,
        bounds: list[int],
        i: int,
    ) -> tuple[ClientConnection, Reader, int] | None:
        """Cut, stay away ``GAP_S`` while "recording" on, resume, send the gap's audio at
        once from the server's ``audio_offset``; return where paced sending goes on."""
        cut(ws)
        time.sleep(GAP_S)
        gap_chunks = int(GAP_S / CHUNK_S)
        resume_at = min(i + gap_chunks, len(bounds) - 1)
        answered = {
            m["utterance_id"]
            for m in messages
            if (m.get("type") == "transcript" and m.get("final"))
            or (m.get("type") == "error" and m.get("utterance_id"))
        }
        again = connect(self.ws_url, max_size=None, open_timeout=10)
        resume = {
            "command": "resume",
            "session_id": started["session_id"],
            "resume_token": started["resume_token"],
            "finals_received": len(answered),
        }
        send_json(again, resume)
        resumed = recv_json(again, timeout=30)
        if resumed.get("type") == "error":  # summarised as the error that ended the recording
            messages.append(resumed)
            again.close()
            return None
        self.tally.add(resumes=1)
        reader = Reader(again, messages)
        again.send(encoded[resumed["audio_offset"] : bounds[resume_at - 1]])
        return again, reader, resume_at

    def _count(self, reference: str, messages: list[dict[str, Any]]) -> None:
        summary = summarise_recording(messages)
        for code in summary["errors"]:
            self.tally.error(code)
        for odd in summary["odd_ids"]:
            self.tally.error("odd_utterance_id")
            print(f"soak: an answer with utterance id {odd!r}", file=sys.stderr)
        self.tally.add(
            recordings=1,
            recordings_ended_by_error=int(summary["ended_by"] is not None),
            accepted=summary["accepted"],
            delivered=summary["delivered"],
            duplicates=summary["duplicates"],
            answered_with_error=summary["answered_with_error"],
            lost=summary["lost"],
            recordings_unfinished=int(not summary["stopped"] and summary["ended_by"] is None),
            out_of_order=summary["out_of_order"],
            live_wer=[round(wer(reference, summary["text"]), 3)] if summary["ended_by"] is None else [],
        )


# --- file clients -------------------------------------------------------------------------


@dataclass
class FileClient:
    base_url: str
    tally: Tally
    stop: threading.Event

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=300) as http:
            for fixture in itertools.cycle(FILE_FIXTURES):
                if self.stop.is_set():
                    return
                self.send(http, fixture)

    def send(self, http: httpx.Client, fixture: str) -> None:
        item = manifest()[fixture]
        self.tally.add(files_sent=1)
        try:
            reply = http.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper-1", "language": "en", "response_format": "json"},
                files={"file": (item["path"], fixture_bytes(fixture))},
            )
        except httpx.HTTPError as exc:
            self.tally.add(files_unanswered=1)
            self.tally.error(f"client:{type(exc).__name__}")
            time.sleep(1.0)
            return
        if reply.status_code == 200:
            self.tally.add(files_ok=1, file_wer=[round(wer(item["reference"], reply.json()["text"]), 3)])
            return
        self.tally.add(files_failed=1)
        try:
            self.tally.error(str(reply.json()["error"].get("code") or reply.status_code))
        except Exception:
            self.tally.error(f"http:{reply.status_code}")
        time.sleep(1.0)


# --- where faults go ----------------------------------------------------------------------


class UpTarget:
    """``whisper-appliance up``'s children, found by their command lines."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # Nothing answers there, so `up` embeds its own Redis (on a port of its choosing).
        self.stack = start_stack(f"redis://127.0.0.1:{free_port()}/0", workers=workers, quiet=True)
        self.base_url = self.stack.base_url
        self.ws_url = self.stack.ws_url

    def close(self) -> None:
        stop_stack(self.stack)

    def children(self) -> dict[str, psutil.Process]:
        out: dict[str, psutil.Process] = {}
        workers = 0
        for child in psutil.Process(self.stack.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                cmdline = child.cmdline()
                if "whisper_appliance.cli" in cmdline:
                    role = cmdline[cmdline.index("whisper_appliance.cli") + 1]
                    if role == "worker":
                        role, workers = f"worker-{workers}", workers + 1
                else:
                    role = "redis" if "redis" in child.name() else child.name()
                out[role] = child
        return out

    def kill(self, role: str) -> None:
        self.children()[role].send_signal(signal.SIGKILL)

    def memory_mb(self) -> dict[str, float]:
        out = {"up": psutil.Process(self.stack.process.pid).memory_info().rss / MB}
        for role, proc in self.children().items():
            with contextlib.suppress(psutil.NoSuchProcess):
                out[role] = proc.memory_info().rss / MB
                kids = proc.children(recursive=True)
                if kids:
                    out[f"{role} children"] = sum(k.memory_info().rss for k in kids) / MB
        return {role: round(mb, 1) for role, mb in sorted(out.items())}


class ComposeTarget:
    """A running compose project: containers by service, killed from the host."""

    def __init__(self, server: str, project: str | None, workers: int) -> None:
        self.base_url = server.rstrip("/")
        self.ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
        self.project = project
        self.workers = workers

    def close(self) -> None:
        pass

    def _containers(self, service: str) -> list[str]:
        labels = ["--filter", f"label=com.docker.compose.service={service}"]
        if self.project:
            labels += ["--filter", f"label=com.docker.compose.project={self.project}"]
        out = subprocess.run(["docker", "ps", "-q", *labels], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def kill(self, role: str) -> None:
        service = {"redis": "redis", "audio": "audio"}.get(role, "whisper")
        containers = sorted(self._containers(service))
        container = containers[int(role.split("-")[1]) % len(containers) if role.startswith("worker-") else 0]
        inspect = ["docker", "inspect", "-f", "{{.State.Pid}}", container]
        pid = int(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
        os.kill(pid, signal.SIGKILL)

    def memory_mb(self) -> dict[str, float]:
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        mem: dict[str, float] = {}
        for line in out.stdout.splitlines():
            name, usage = line.split(" ", 1)
            value = usage.split("/")[0].strip()
            number = float(value.rstrip("KMGiB"))
            scale = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}.get(value.lstrip("0123456789."), 1.0)
            mem[name] = round(number * scale, 1)
        return mem


Target = UpTarget | ComposeTarget


def healthy(base_url: str, workers: int) -> bool:
    try:
        reply = httpx.get(f"{base_url}/health", timeout=2)
        return reply.status_code == 200 and reply.json()["workers"] >= workers
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def inject(
    target: Target, fault: str, clients: list[LiveClient], tally: Tally, rotate: Iterator[int]
) -> None:
    """One fault, then how long until ``/health`` had every worker again."""
    t0 = time.monotonic()
    if fault == "worker_kill":
        target.kill(f"worker-{next(rotate) % target.workers}")
    elif fault == "redis_restart":
        target.kill("redis")
    elif fault == "audio_restart":
        target.kill("audio")
    else:
        clients[next(rotate) % len(clients)].cut_requested.set()
    time.sleep(1.0)
    while not healthy(target.base_url, target.workers) and time.monotonic() - t0 < 120:
        time.sleep(0.5)
    recovered = round(time.monotonic() - t0, 1)
    tally.add(faults=[{"fault": fault, "at_s": round(t0, 1), "healthy_again_s": recovered}])
    print(f"soak: {fault}: healthy again after {recovered} s", flush=True)


def soak(
    target: Target, *, minutes: float, streams: int, file_clients: int, fault_every_s: float
) -> dict[str, Any]:
    tally = Tally()
    stop = threading.Event()
    memory_start = target.memory_mb()
    clients = [LiveClient(target.ws_url, tally, stop) for _ in range(streams)]
    files = [FileClient(target.base_url, tally, stop) for _ in range(file_clients)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in [*clients, *files]]
    for thread in threads:
        thread.start()
    t0 = time.monotonic()
    end = t0 + minutes * 60
    rotate = itertools.count()
    faults = itertools.cycle(FAULTS)
    next_fault = t0 + fault_every_s
    while time.monotonic() < end:
        if time.monotonic() >= next_fault:
            inject(target, next(faults), clients, tally, rotate)
            next_fault += fault_every_s
        time.sleep(0.5)
    stop.set()
    for thread in threads:  # each finishes its recording or file
        thread.join(300)
    return report(tally, memory_start, target.memory_mb(), time.monotonic() - t0)


def report(
    tally: Tally, memory_start: dict[str, float], memory_end: dict[str, float], wall_s: float
) -> dict[str, Any]:
    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    return {
        "wall_s": round(wall_s, 1),
        "recordings": tally.recordings,
        "recordings_ended_by_error": tally.recordings_ended_by_error,
        "recordings_unfinished": tally.recordings_unfinished,
        "resumes": tally.resumes,
        "utterances_accepted": tally.accepted,
        "finals_delivered": tally.delivered,
        "answered_with_error": tally.answered_with_error,
        "duplicates": tally.duplicates,
        "lost": tally.lost,
        "out_of_order": tally.out_of_order,
        "live_wer_mean": mean(tally.live_wer),
        "live_wer_max": max(tally.live_wer, default=None),
        "files_sent": tally.files_sent,
        "files_ok": tally.files_ok,
        "files_failed": tally.files_failed,
        "files_unanswered": tally.files_unanswered,
        "file_wer_mean": mean(tally.file_wer),
        "file_wer_max": max(tally.file_wer, default=None),
        "errors": dict(tally.errors),
        "faults": Counter(f["fault"] for f in tally.faults),
        "healthy_again_s_max": max((f["healthy_again_s"] for f in tally.faults), default=None),
        "memory_mb_start": memory_start,
        "memory_mb_end": memory_end,
    }


def print_report(result: dict[str, Any]) -> None:
    for key in (k for k in result if not k.startswith("memory")):
        print(f"{key:>28}: {result[key]}")
    roles = sorted(set(result["memory_mb_start"]) | set(result["memory_mb_end"]))
    rows = [
        {"role": r, "start": result["memory_mb_start"].get(r), "end": result["memory_mb_end"].get(r)}
        for r in roles
    ]
    print_table(rows, [("service", "role", 22), ("RSS MB start", "start", 14), ("RSS MB end", "end", 12)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--file-clients", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-every-s", type=float, default=60.0)
    parser.add_argument("--target", choices=("up", "compose"), default="up")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="compose: the gateway's URL")
    parser.add_argument("--project", default=None, help="compose: the project name")
    parser.add_argument("--report", default=None)
    args = parser.parse_args(argv)
    make: Callable[[], Target] = (
        (lambda: UpTarget(args.workers))
        if args.target == "up"
        else (lambda: ComposeTarget(args.server, args.project, args.workers))
    )
    target = make()
    try:
        print(
            f"soak: {machine()}; {args.target}, {args.workers} workers, {args.streams} live streams, "
            f"{args.file_clients} file clients, a fault every {args.fault_every_s:g} s "
            f"for {args.minutes:g} min",
            flush=True,
        )
        result = soak(
            target,
            minutes=args.minutes,
            streams=args.streams,
            file_clients=args.file_clients,
            fault_every_s=args.fault_every_s,
        )
    finally:
        target.close()
    print_report(result)
    write_report(args.report, [result], target=args.target, minutes=args.minutes, streams=args.streams)
    print(json.dumps({"lost": result["lost"], "duplicates": result["duplicates"]}))


if __name__ == "__main__":
    main()
