"""The services started one process each, for fault tests that kill or restart one of
them (``whisper-appliance up`` stops the whole stack when a child dies, by design)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from whisper_appliance.embedded_redis import free_port


@dataclass
class Services:
    redis_url: str
    env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    audio: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    audio_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "S2T_REDIS_URL": self.redis_url,
            "S2T_AUDIO_SERVICE_URL": f"http://127.0.0.1:{self.audio_port}",
            "S2T_LOG_JSON": "true",
            "S2T_LOG_LEVEL": "WARNING",
            **self.env,
        }

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "whisper_appliance.cli", *args], env=self._env())

    def start_audio(self) -> None:
        self.audio = self._spawn("audio", "--host", "127.0.0.1", "--port", str(self.audio_port))
        _wait_http(f"http://127.0.0.1:{self.audio_port}/health", self.audio)

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker")
        self.workers.append(proc)
        return proc

    def start_gateway(self) -> None:
        self.gateway = self._spawn("gateway", "--host", "127.0.0.1", "--port", str(self.port))
        _wait_http(f"{self.base_url}/api/models", self.gateway)

    def wait_workers(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).json()["workers"] >= count:
                    return
            assert time.monotonic() < deadline, f"{count} worker(s) did not come up"
            time.sleep(0.25)

    def start(self, workers: int) -> Services:
        self.start_audio()
        for _ in range(workers):
            self.start_worker()
        self.start_gateway()
        self.wait_workers(workers)
        return self

    def stop(self) -> None:
        procs = [p for p in (self.gateway, *self.workers, self.audio) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{url}: the process exited with {proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout} s"
        time.sleep(0.1)
