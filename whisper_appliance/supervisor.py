"""``whisper-appliance up``: Redis (embedded when none answers), the audio service, N
workers and the gateway, as child processes of this one.

Ctrl-C or SIGTERM stops every child; children also get SIGTERM from the kernel if this
process dies without cleaning up (PR_SET_PDEATHSIG), so nothing is left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from shared.config import Settings
from whisper_appliance.embedded_redis import answers, free_port, start_redis

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):  # non-Linux: no parent-death signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Supervisor:
    settings: Settings
    workers: int
    port: int
    host: str
    model: str
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "S2T_REDIS_URL": self.settings.redis_url,
                "S2T_MODEL": self.model,
                "S2T_WORKERS": str(self.workers),
                **extra,
            }
        )
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisper_appliance.cli", *args], env=env, preexec_fn=_die_with_parent
        )
        self.children.append((name, proc))

    def start(self) -> None:
        if not answers(self.settings.redis_url):
            proc, url = start_redis(preexec_fn=_die_with_parent)
            self.children.append(("redis", proc))
            self.settings = self.settings.model_copy(update={"redis_url": url})
            print(f"whisper-appliance: started embedded Redis at {url}", flush=True)
        else:
            print(f"whisper-appliance: using Redis at {self.settings.masked()['redis_url']}", flush=True)
        audio_port = free_port()
        audio_url = f"http://127.0.0.1:{audio_port}"
        common = {"S2T_AUDIO_SERVICE_URL": audio_url}
        self.spawn(
            "audio", ["audio", "--host", "127.0.0.1", "--port", str(audio_port)], self.child_env(**common)
        )
        for i in range(self.workers):
            # Each worker serves /metrics and /health on a port of its own.
            port = {"S2T_WORKER_METRICS_PORT": str(free_port())}
            self.spawn(f"worker-{i}", ["worker"], self.child_env(**common, **port))
        self.spawn(
            "gateway", ["gateway", "--host", self.host, "--port", str(self.port)], self.child_env(**common)
        )

    def wait_ready(self, timeout: float = 180.0) -> bool:
        """Until /health says a worker is alive, showing progress on the terminal."""
        url = f"http://{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failed():
                return False
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    print(
                        f"whisper-appliance: ready on http://{self.host}:{self.port}/ "
                        f"({self.workers} worker(s), model {self.model})",
                        flush=True,
                    )
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        return False

    def failed(self) -> str | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}"
        return None

    def stop(self) -> None:
        """SIGTERM everyone (gateway first, Redis last), then SIGKILL stragglers."""
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_up(settings: Settings, *, workers: int, port: int, host: str, model: str) -> int:
    supervisor = Supervisor(settings, workers, port, host, model)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        supervisor.start()
        ready = False
        while not stopping:
            failure = supervisor.failed()
            if failure:
                print(f"whisper-appliance: {failure}; stopping", file=sys.stderr, flush=True)
                code = 1
                break
            if not ready:
                ready = supervisor.wait_ready(timeout=0.5) or ready
            else:
                time.sleep(0.5)
    finally:
        print("whisper-appliance: stopping", flush=True)
        supervisor.stop()
    return code
