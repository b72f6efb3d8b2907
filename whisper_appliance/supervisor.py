"""``whisper-appliance up``: Redis (embedded when none answers, never for a Sentinel URL), the
audio service, N workers and the gateway, as child processes of this one, kept running.

A child that exits is started again with the same name, ports and settings, after a
backoff, while the others keep serving; more than ``S2T_RESTART_LIMIT`` exits of one
child within ``S2T_RESTART_WINDOW_S`` is a crash loop, and only then does ``up`` stop,
exit 1 and say which child and why (:mod:`whisper_appliance.restart_policy`). Restarts
are printed and shown in the gateway's ``/health`` (:mod:`shared.supervisor_status`).

A killed worker's in-flight job is the audio service's reaper's: it retries jobs whose
worker's heartbeat key is gone, and that key would linger for its TTL (15 s). So once
another worker is alive to take the retry, ``up`` deletes the dead worker's heartbeat
(it knows the pid that died): the job is retried within the reaper's next pass (~2 s),
and ``/health`` counts the workers that exist. With no other worker alive it waits for
the replacement's first heartbeat instead, since the reaper answers ``worker_lost``
rather than retry when it sees no worker at all.

Ctrl-C or SIGTERM stops every child; children also get SIGTERM from the kernel if this
process dies without cleaning up (PR_SET_PDEATHSIG), so nothing is left running.

Why a hand-written loop and not a library (issue 16): supervisord (PyPI ``supervisor``)
is a daemon driven by an ini file on disk and XML-RPC; its only crash-loop notion is
"exited before ``startsecs``, ``startretries`` times", so a worker that served for a
minute and is then killed over and over is restarted forever, and ``up`` would have to
drive it rather than be it (embedded Redis, free ports, parent-death signal). circus
has the right policy (its flapping detection is "N restarts within a window") but pulls
pyzmq and tornado into a speech service and runs its arbiter behind ZeroMQ control
sockets, for what is here a hundred lines of ``Popen.poll``. honcho (foreman) stops
everything when one process exits: today's behaviour, the one being fixed. tenacity,
already a dependency, retries one call in one thread; the loop here watches several
children at once, so it would only lend the ``2 ** n`` of the backoff. The policy is
therefore a small pure class, tested without processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import redis

from shared import codec, supervisor_status
from shared.config import Settings
from shared.redis_keys import WORKER_HEARTBEAT_TTL_S, WORKER_KEY_PREFIX, sync_client
from shared.redis_url import is_sentinel_url
from whisper_appliance.embedded_redis import free_port, start_redis
from whisper_appliance.restart_policy import ExitHistory, GiveUp, RestartPolicy

PR_SET_PDEATHSIG = 1
TICK_S = 0.25
STATUS_EVERY_S = 2.0


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):  # non-Linux: no parent-death signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _say(message: str, *, stdout: bool = False) -> None:
    """Supervision events go to stderr with the children's logs; banners to stdout."""
    print(f"whisper-appliance: {message}", file=sys.stdout if stdout else sys.stderr, flush=True)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"code {code} (killed by {signal.Signals(-code).name})"
    return f"code {code}"


@dataclass
class Child:
    """One supervised process; ``args`` are ``whisper_appliance.cli`` arguments, or None
    for the embedded Redis (restarted on the same port, empty: it keeps nothing)."""

    name: str
    args: list[str] | None
    env: dict[str, str]
    history: ExitHistory
    proc: subprocess.Popen[bytes] | None = None
    redis_port: int | None = None
    restart_at: float | None = None  # monotonic time of a restart that is due
    exited_at: float | None = None  # monotonic time of the last exit
    awaiting_heartbeat: bool = False  # a restarted worker not yet serving

    @property
    def is_worker(self) -> bool:
        return self.name.startswith("worker-")


@dataclass
class DeadWorker:
    pid: int
    forget_at: float  # by then its heartbeat has expired anyway


@dataclass
class Supervisor:
    settings: Settings
    workers: int
    port: int
    host: str
    model: str
    children: list[Child] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    started_at: float = field(default_factory=time.time)
    last_restart: supervisor_status.LastRestart | None = None
    dead_workers: list[DeadWorker] = field(default_factory=list)
    _redis: redis.Redis | None = None
    _status_due: float = 0.0

    @property
    def policy(self) -> RestartPolicy:
        return RestartPolicy.from_settings(self.settings)

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "S2T_REDIS_URL": self.settings.redis_url,
                "S2T_MODEL": self.model,
                "S2T_WORKERS": str(self.workers),
                "S2T_SUPERVISOR_ID": self.id,
                **extra,
            }
        )
        return env

    def _add(self, name: str, args: list[str] | None, env: dict[str, str]) -> Child:
        child = Child(name, args, env, ExitHistory(self.policy))
        self.children.append(child)
        return child

    def _launch(self, child: Child) -> None:
        if child.args is None:
            child.proc, _ = start_redis(child.redis_port, preexec_fn=_die_with_parent)
            return
        env = child.env
        if child.is_worker:
            # Each worker serves /metrics and /health on a port of its own, fresh each start.
            env = {**env, "S2T_WORKER_METRICS_PORT": str(free_port())}
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "whisper_appliance.cli", *child.args], env=env, preexec_fn=_die_with_parent
        )

    def start(self) -> None:
        if is_sentinel_url(self.settings.redis_url):
            # Sentinel means an operator runs Redis for high availability: never replace it
            # with a private, empty one, even while no primary answers (the services wait).
            where = "" if self._answers() else " (no primary answers yet; the services keep trying)"
            _say(f"using Redis Sentinel at {self.settings.masked()['redis_url']}{where}", stdout=True)
        elif not self._answers():
            redis_port = free_port()
            child = self._add("redis", None, {})
            child.redis_port = redis_port
            self._launch(child)
            url = f"redis://127.0.0.1:{redis_port}/0"
            self.settings = self.settings.model_copy(update={"redis_url": url})
            _say(f"started embedded Redis at {url}", stdout=True)
        else:
            _say(f"using Redis at {self.settings.masked()['redis_url']}", stdout=True)
        audio_port = free_port()
        common = {"S2T_AUDIO_SERVICE_URL": f"http://127.0.0.1:{audio_port}"}
        self._add(
            "audio", ["audio", "--host", "127.0.0.1", "--port", str(audio_port)], self.child_env(**common)
        )
        for i in range(self.workers):
            self._add(f"worker-{i}", ["worker"], self.child_env(**common))
        self._add(
            "gateway", ["gateway", "--host", self.host, "--port", str(self.port)], self.child_env(**common)
        )
        for child in self.children:
            if child.proc is None:
                self._launch(child)
        _say(
            f"restart policy: a child that exits is restarted; {self.policy.describe()} stops up", stdout=True
        )

    def health_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/health"

    def ready(self) -> bool:
        """Whether /health says a worker is alive (one short try; the loop calls again)."""
        try:
            return httpx.get(self.health_url(), timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def tick(self, now: float) -> str | None:
        """Notice exits, start the restarts that are due; a crash loop's message, or None."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                failure = self._on_exit(child, now)
                if failure:
                    return failure
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                try:
                    self._launch(child)
                except Exception as exc:  # e.g. Redis not starting: counts as an exit
                    _say(f"{child.name} could not be started again: {exc}")
                    child.proc = None
                    failure = self._on_exit(child, time.monotonic(), code=None)
                    if failure:
                        return failure
                    continue
                child.awaiting_heartbeat = child.is_worker
                pid = child.proc.pid if child.proc else None
                _say(f"{child.name} restarted (pid {pid}; {child.history.restarts} restart(s) so far)")
                self._status_due = 0.0
        self._watch_heartbeats(now)
        return None

    def _on_exit(self, child: Child, now: float, code: int | None = None) -> str | None:
        if child.proc is not None:
            code = child.proc.returncode
            if child.is_worker:
                self.dead_workers.append(DeadWorker(child.proc.pid, now + WORKER_HEARTBEAT_TTL_S + 5))
        pid = child.proc.pid if child.proc else None
        child.proc = None
        child.exited_at = now
        child.awaiting_heartbeat = False
        decision = child.history.on_exit(now)
        if isinstance(decision, GiveUp):
            return (
                f"{child.name} (pid {pid}) exited with {describe_exit(code)}; {decision.reason}; "
                f"giving up on it (S2T_RESTART_LIMIT={self.policy.limit}, "
                f"S2T_RESTART_WINDOW_S={self.policy.window_s:g})"
            )
        _say(
            f"{child.name} (pid {pid}) exited with {describe_exit(code)}; restarting in "
            f"{decision.delay_s:g} s (restart {decision.exits_in_window} of at most "
            f"{self.policy.limit} within {self.policy.window_s:g} s)",
        )
        child.restart_at = now + decision.delay_s
        self.last_restart = supervisor_status.LastRestart(child=child.name, exit_code=code, at=time.time())
        self._status_due = 0.0
        return None

    def _answers(self) -> bool:
        """Whether Redis answers the way the services will connect (password included)."""
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False
        finally:
            self._redis = None  # the URL may change to an embedded Redis's

    def _client(self) -> redis.Redis:
        """Short timeouts: a Redis that hangs must not stall the supervision loop."""
        if self._redis is None:
            self._redis = sync_client(self.settings, socket_timeout=1.0, socket_connect_timeout=1.0)
        return self._redis

    def _heartbeat_pids(self) -> dict[int, bytes]:
        """pid -> heartbeat key of every worker on this host that Redis lists as alive."""
        client = self._client()
        keys = list(client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200))
        found: dict[int, bytes] = {}
        for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
            with contextlib.suppress(Exception):
                info = codec.loads(raw)
                if info.get("host") == socket.gethostname():
                    found[int(info["pid"])] = key
        return found

    def _watch_heartbeats(self, now: float) -> None:
        """Delete dead workers' heartbeats once someone else can take their job; log when
        a restarted worker serves again."""
        waiting = [c for c in self.children if c.awaiting_heartbeat and c.proc is not None]
        self.dead_workers = [d for d in self.dead_workers if now < d.forget_at]
        if not waiting and not self.dead_workers:
            return
        try:
            alive = self._heartbeat_pids()
            dead = {d.pid for d in self.dead_workers}
            if any(pid not in dead for pid in alive):
                for worker in self.dead_workers:
                    if worker.pid in alive:
                        self._client().delete(alive[worker.pid])
                        _say(f"removed the heartbeat of dead worker pid {worker.pid}: its job is retried now")
                self.dead_workers = [d for d in self.dead_workers if d.pid not in alive]
            for child in waiting:
                if child.proc is not None and child.proc.pid in alive:
                    child.awaiting_heartbeat = False
                    since = now - (child.exited_at or now)
                    _say(f"{child.name} serving again (pid {child.proc.pid}), {since:.1f} s after its exit")
        except redis.RedisError:
            pass  # Redis away: the keys expire by themselves, the next tick tries again

    def status(self) -> supervisor_status.SupervisorStatus:
        return supervisor_status.SupervisorStatus(
            id=self.id,
            pid=os.getpid(),
            started_at=self.started_at,
            restarts={c.name: c.history.restarts for c in self.children},
            last_restart=self.last_restart,
        )

    def publish_status(self, now: float) -> None:
        if now < self._status_due:
            return
        self._status_due = now + STATUS_EVERY_S
        with contextlib.suppress(redis.RedisError):
            supervisor_status.publish(self._client(), self.status())

    def stop(self) -> None:
        """SIGTERM everyone (gateway first, Redis last), then SIGKILL stragglers."""
        with contextlib.suppress(redis.RedisError):
            supervisor_status.remove(self._client(), self.id)
        procs = [c.proc for c in reversed(self.children) if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
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
            now = time.monotonic()
            failure = supervisor.tick(now)
            if failure:
                _say(f"{failure}; stopping")
                code = 1
                break
            supervisor.publish_status(now)
            if not ready and supervisor.ready():
                ready = True
                _say(f"ready on http://{host}:{port}/ ({workers} worker(s), model {model})", stdout=True)
            time.sleep(TICK_S)
    finally:
        _say("stopping", stdout=True)
        supervisor.stop()
    return code
