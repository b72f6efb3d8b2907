"""``up``'s restart policy and bookkeeping as pure logic: no process is started.

The policy is fed exit times; the supervisor's loop is driven with stand-in processes
and fakeredis, to pin down what is restarted when, when ``up`` gives up, what ``/health``
is told, and when a dead worker's heartbeat is removed."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import fakeredis
import fakeredis.aioredis
import pytest

from shared import codec, supervisor_status
from shared.config import Settings
from shared.redis_keys import worker_key
from whisper_appliance import supervisor as supervisor_module
from whisper_appliance.restart_policy import ExitHistory, GiveUp, Restart, RestartPolicy
from whisper_appliance.supervisor import Child, Supervisor, describe_exit

POLICY = RestartPolicy(limit=3, window_s=60.0, backoff_s=0.5, backoff_max_s=3.0)


def test_backoff_doubles_with_each_exit_in_the_window_up_to_the_cap() -> None:
    history = ExitHistory(RestartPolicy(limit=10, window_s=60.0, backoff_s=0.5, backoff_max_s=3.0))
    delays = [history.on_exit(float(t)) for t in range(5)]
    assert [d.delay_s for d in delays if isinstance(d, Restart)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert history.restarts == 5


def test_more_than_limit_exits_within_the_window_is_a_crash_loop() -> None:
    history = ExitHistory(POLICY)
    assert all(isinstance(history.on_exit(t), Restart) for t in (0.0, 10.0, 20.0))
    decision = history.on_exit(30.0)
    assert isinstance(decision, GiveUp)
    assert decision.reason == "4 exits within 60 s, a crash loop (more than 3 exit(s) within 60 s)"
    assert history.restarts == 3  # the exit given up on is not a restart


def test_exits_older_than_the_window_are_forgotten() -> None:
    """A child that dies now and then (here every 25 s, 3 per 60 s at most) is restarted
    forever, and its backoff starts over."""
    history = ExitHistory(POLICY)
    decisions = [history.on_exit(25.0 * i) for i in range(20)]
    assert all(isinstance(d, Restart) for d in decisions)
    assert max(d.exits_in_window for d in decisions if isinstance(d, Restart)) == 3


def test_exit_exactly_at_the_window_edge_still_counts() -> None:
    history = ExitHistory(RestartPolicy(limit=1, window_s=10.0))
    assert isinstance(history.on_exit(0.0), Restart)
    assert isinstance(history.on_exit(10.0), GiveUp)  # within 10 s, edge included


def test_limit_zero_stops_at_the_first_exit() -> None:
    assert isinstance(ExitHistory(RestartPolicy(limit=0)).on_exit(0.0), GiveUp)


def test_policy_from_settings() -> None:
    settings = Settings(restart_limit=2, restart_window_s=30, restart_backoff_s=1, restart_backoff_max_s=4)
    assert RestartPolicy.from_settings(settings) == RestartPolicy(2, 30.0, 1.0, 4.0)
    assert RestartPolicy.from_settings(Settings(restart_limit=-1)).limit == 0


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-9) == "code -9 (killed by SIGKILL)"
    assert describe_exit(1) == "code 1"


@dataclass
class FakeProc:
    """Popen's surface the loop uses."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@pytest.fixture
def sup(monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    settings = Settings(restart_limit=2, restart_window_s=60, restart_backoff_s=1, restart_backoff_max_s=8)
    monkeypatch.setattr(supervisor_module, "_say", lambda *a, **k: None)
    s = Supervisor(settings, workers=2, port=1, host="127.0.0.1", model="tiny.en")
    s._redis = fakeredis.FakeRedis()
    pids = iter(range(1000, 2000))

    def launch(child: Child) -> None:
        child.proc = FakeProc(next(pids))  # type: ignore[assignment]

    monkeypatch.setattr(s, "_launch", launch)
    for name in ("audio", "worker-0", "worker-1", "gateway"):
        launch(s._add(name, [name], {}))
    return s


def _kill(child: Child, code: int = -9) -> int:
    assert child.proc is not None
    child.proc.returncode = code
    return child.proc.pid


def _heartbeat(client: fakeredis.FakeRedis, worker_id: str, pid: int) -> None:
    info = {"id": worker_id, "host": socket.gethostname(), "pid": pid}
    client.set(worker_key(worker_id), codec.dumps(info), ex=15)


def test_a_dead_child_is_restarted_after_its_backoff_while_others_run(sup: Supervisor) -> None:
    worker = sup.children[1]
    others = [c.proc for c in sup.children if c is not worker]
    _kill(worker)
    assert sup.tick(100.0) is None
    assert worker.proc is None and worker.restart_at == 101.0
    assert sup.tick(100.5) is None and worker.proc is None  # still backing off
    assert sup.tick(101.0) is None and worker.proc is not None
    assert [c.proc for c in sup.children if c is not worker] == others  # nobody else touched
    assert sup.status().restarts == {"audio": 0, "worker-0": 1, "worker-1": 0, "gateway": 0}
    last = sup.status().last_restart
    assert last is not None and last.child == "worker-0" and last.exit_code == -9


def test_a_crash_looping_child_stops_up_with_a_clear_message(sup: Supervisor) -> None:
    gateway = sup.children[3]
    now = 0.0
    for _ in range(2):
        _kill(gateway, code=1)
        assert sup.tick(now) is None
        now = gateway.restart_at or now
        assert sup.tick(now) is None
    _kill(gateway, code=1)
    failure = sup.tick(now + 0.1)
    assert failure is not None
    assert failure.startswith("gateway (pid") and "exited with code 1" in failure
    assert "crash loop" in failure and "S2T_RESTART_LIMIT=2" in failure


def test_dead_workers_heartbeat_is_removed_once_another_worker_is_alive(sup: Supervisor) -> None:
    client = sup._client()
    w0, w1 = sup.children[1], sup.children[2]
    assert w0.proc is not None and w1.proc is not None
    _heartbeat(client, "w0", w0.proc.pid)
    _heartbeat(client, "w1", w1.proc.pid)
    _kill(w0)
    sup.tick(0.0)
    assert not client.exists(worker_key("w0")), "the reaper should not wait for the TTL"
    assert client.exists(worker_key("w1"))


def test_the_only_workers_heartbeat_stays_until_its_replacement_announces(
    monkeypatch: pytest.MonkeyPatch, sup: Supervisor
) -> None:
    """Deleted at once, the reaper would see no worker and answer worker_lost."""
    client = sup._client()
    sup.children = [c for c in sup.children if c.name != "worker-1"]
    w0 = sup.children[1]
    assert w0.proc is not None
    _heartbeat(client, "w0", w0.proc.pid)
    _kill(w0)
    sup.tick(0.0)
    assert client.exists(worker_key("w0"))
    sup.tick(w0.restart_at or 0.0)
    assert w0.proc is not None and w0.awaiting_heartbeat
    _heartbeat(client, "w0-new", w0.proc.pid)
    sup.tick(5.0)
    assert not client.exists(worker_key("w0")) and client.exists(worker_key("w0-new"))
    assert not w0.awaiting_heartbeat


def test_status_round_trip_and_absent_without_up(sup: Supervisor) -> None:
    server = fakeredis.FakeServer()
    sup._redis = fakeredis.FakeRedis(server=server)
    sup.publish_status(0.0)
    reader = fakeredis.aioredis.FakeRedis(server=server)
    shown = asyncio.run(supervisor_status.read(reader, sup.id))
    assert shown is not None and shown["restarts"]["worker-0"] == 0 and shown["pid"] > 0
    assert asyncio.run(supervisor_status.read(reader, None)) is None  # gateway without `up`
    assert asyncio.run(supervisor_status.read(reader, "someone-else")) is None
    assert sup._redis.ttl(supervisor_status.supervisor_key(sup.id)) <= supervisor_status.SUPERVISOR_TTL_S
