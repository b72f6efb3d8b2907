"""``whisper-appliance up`` as a process manager, with real processes as users run it: a
worker SIGKILLed mid-file is restarted while the other serves and the file completes;
a child that cannot start, or is killed over and over, makes ``up`` give up with a
clear message and exit 1, in bounded time and leaving nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from websockets.sync.client import connect

from shared import codec
from shared.redis_keys import INFLIGHT_KEY, worker_key
from tests.conftest import private_redis, start_stack, stop_stack
from tests.helpers import (
    collect_until_complete,
    finals,
    fixture_bytes,
    fixture_webm,
    joined_text,
    manifest,
    process_audio_message,
    send_json,
    wer,
)
from whisper_appliance.embedded_redis import free_port

pytestmark = pytest.mark.slow

#: One thread and a wide beam: a job lasts long enough to be killed in the middle of it.
SLOW_WORKER = {"S2T_CPU_THREADS": "1", "S2T_BEAM_SIZE": "5", "S2T_JOB_TIMEOUT_S": "60"}


def worker_pids(up: psutil.Process) -> set[int]:
    pids = set()
    for child in up.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-1:] == ["worker"]:
                pids.add(child.pid)
        except psutil.Error:  # exited meanwhile
            continue
    return pids


def kill_busy_worker(client: redis.Redis, timeout: float = 30.0) -> int:
    """SIGKILL the worker that holds a job right now; return its pid."""
    deadline = time.monotonic() + timeout
    while not (inflight := client.hgetall(INFLIGHT_KEY)):
        assert time.monotonic() < deadline, "no worker took the job"
        time.sleep(0.01)
    job_id, raw = next(iter(inflight.items()))
    pid = int(codec.loads(client.get(worker_key(codec.loads(raw)["worker"])))["pid"])
    os.kill(pid, signal.SIGKILL)
    assert client.hexists(INFLIGHT_KEY, job_id), "the job finished before the kill; nothing was tested"
    return pid


def test_killed_worker_is_restarted_while_the_other_serves(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with private_redis() as url:
        stack = start_stack(url, workers=2, extra_env=SLOW_WORKER, log_path=log)
        try:
            up = psutil.Process(stack.process.pid)
            before = worker_pids(up)
            assert len(before) == 2
            assert httpx.get(f"{stack.base_url}/health").json()["supervisor"]["restarts"]["worker-0"] == 0
            client = redis.Redis.from_url(url)
            with connect(stack.ws_url, max_size=None) as ws:
                send_json(ws, process_audio_message(fixture_bytes("jfk"), language="en", request_id="k1"))
                killed = kill_busy_worker(client)
                killed_at = time.monotonic()
                messages = collect_until_complete(ws, "k1", timeout=90)
                file_done_s = time.monotonic() - killed_at
            got = finals(messages)
            assert len(got) == 1, messages  # the piece in flight, retried on the other worker
            assert wer(manifest()["jfk"]["reference"], got[0]["transcript"]) < 0.3

            # Back to two workers: a new process, announced in /health with the restart.
            deadline = time.monotonic() + 90
            while True:
                health = httpx.get(f"{stack.base_url}/health", timeout=5).json()
                pids = {w["pid"] for w in health["live_workers"]}
                if len(pids) == 2 and killed not in pids:
                    break
                assert time.monotonic() < deadline, health
                time.sleep(0.1)
            serving_again_s = time.monotonic() - killed_at
            restarts = health["supervisor"]["restarts"]
            assert sum(restarts.values()) == 1 and set(restarts) >= {"worker-0", "worker-1", "gateway"}
            assert health["supervisor"]["last_restart"]["exit_code"] == -signal.SIGKILL
            after = worker_pids(up)
            assert len(after) == 2 and killed not in after and after == pids
            assert health["workers"] == 2

            # Still serving (the gateway and audio service were never touched).
            with connect(stack.ws_url, max_size=None) as ws:
                send_json(ws, process_audio_message(fixture_webm("jfk")))
                again = collect_until_complete(ws)
            assert wer(manifest()["jfk"]["reference"], joined_text(again)) <= 0.10
        finally:
            stop_stack(stack)
    assert stack.process.returncode == 0
    text = log.read_text(errors="replace")
    assert f"(pid {killed}) exited with code -9 (killed by SIGKILL); restarting" in text
    assert "serving again" in text
    print(f"\nfile done {file_done_s:.1f} s after the kill; new worker serving after {serving_again_s:.1f} s")


def _run_up(extra_env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``up`` on an embedded Redis, quick to give up; its and its children's stderr to ``log``
    (a file, not a pipe: nobody reads a pipe while it runs, and a full one would block it)."""
    env = {
        **os.environ,
        "S2T_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing answers: embedded
        "S2T_LOG_JSON": "true",
        "S2T_RESTART_LIMIT": "2",
        "S2T_RESTART_BACKOFF_S": "0.2",
        **extra_env,
    }
    port = free_port()
    command = [sys.executable, "-m", "whisper_appliance.cli", "up", "--workers", str(workers)]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    return proc, f"http://127.0.0.1:{port}"


def _finish(proc: subprocess.Popen[bytes], seen: list[psutil.Process], log: Path, timeout: float) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"up did not give up within {timeout:g} s") from None
    stderr = log.read_text(errors="replace")
    assert proc.returncode == 1, stderr[-3000:]
    _, alive = psutil.wait_procs(seen, timeout=10)
    assert not alive, f"left running: {[c.pid for c in alive]}"
    return stderr


def test_a_worker_that_cannot_start_makes_up_give_up(tmp_path: Path) -> None:
    """A bad setting (a device that does not exist): every start fails the same way."""
    t0 = time.monotonic()
    log = tmp_path / "up.log"
    proc, _ = _run_up({"S2T_DEVICE": "no-such-device"}, workers=1, log=log)
    seen: list[psutil.Process] = []
    while proc.poll() is None and time.monotonic() - t0 < 10:
        seen = psutil.Process(proc.pid).children()
        time.sleep(0.5)
    stderr = _finish(proc, seen, log, timeout=150)
    took = time.monotonic() - t0
    lines = [line for line in stderr.splitlines() if line.startswith("whisper-appliance: worker-0")]
    assert sum("restarting in" in line for line in lines) == 2, lines
    final = [line for line in stderr.splitlines() if "giving up" in line]
    assert len(final) == 1, stderr[-3000:]
    assert "worker-0" in final[0] and "exited with code 1" in final[0]
    assert "3 exits within 120 s, a crash loop (more than 2 exit(s) within 120 s)" in final[0]
    assert final[0].endswith("; stopping")
    print(f"\nup gave up after {took:.1f} s")


def test_a_worker_killed_over_and_over_makes_up_give_up(tmp_path: Path) -> None:
    """Each time once it serves (its heartbeat in /health): a worker that ran fine and
    is then killed again and again counts as a crash loop too."""
    t0 = time.monotonic()
    log = tmp_path / "up.log"
    proc, base = _run_up({}, workers=1, log=log)
    seen: list[psutil.Process] = []
    killed: list[int] = []
    while proc.poll() is None and time.monotonic() - t0 < 150:
        try:
            seen += [c for c in psutil.Process(proc.pid).children() if c not in seen]
            health = httpx.get(f"{base}/health", timeout=2).json()
        except (psutil.Error, httpx.HTTPError, ValueError):
            time.sleep(0.2)
            continue
        for pid in {w["pid"] for w in health["live_workers"]} - set(killed):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.2)
    stderr = _finish(proc, seen, log, timeout=30)
    assert len(killed) == 3, killed
    final = f"worker-0 (pid {killed[-1]}) exited with code -9 (killed by SIGKILL); 3 exits within 120 s"
    assert final in stderr and "giving up on it" in stderr
    print(f"\nup gave up after {time.monotonic() - t0:.1f} s")
