"""Operators' view of a running stack: every metric exists on the service that owns it
and moves when work is done, logs are JSON lines whose ids follow a job across the three
services (and never carry transcript text), and ``/health`` tells a load balancer when
nobody can transcribe.

One stack (one worker, its own Redis, its logs in a file) serves the whole module; the
health test runs last because it stops that stack's worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.conftest import Stack, private_redis, start_stack, stop_stack
from tests.helpers import (
    chunk_stream,
    collect_until_complete,
    finals,
    fixture_webm,
    manifest,
    process_audio_message,
    recv_json,
    send_json,
    stream_live,
)
from whisper_appliance.embedded_redis import free_port

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def has(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    log_path = tmp_path_factory.mktemp("logs") / "stack.log"
    with private_redis() as url:
        running = start_stack(url, workers=1, log_path=log_path)
        yield running, log_path
        stop_stack(running)


def endpoints(stack: Stack, log_path: Path) -> dict[str, str]:
    """Where each service serves /metrics: the audio service's URL from the gateway's
    logged configuration, the worker's port from its heartbeat."""
    config = next(
        line
        for line in log_lines(log_path)
        if line.get("service") == "gateway" and line.get("event") == "effective_configuration"
    )
    [worker] = httpx.get(f"{stack.base_url}/api/status", timeout=10).json()["workers"]
    assert worker["metrics_port"], worker
    return {
        "gateway": f"{stack.base_url}/metrics",
        "audio": f"{config['audio_service_url']}/metrics",
        "worker": f"http://127.0.0.1:{worker['metrics_port']}",
    }


def do_work(stack: Stack) -> None:
    """One file through the OpenAI-compatible API, one through /ws, one bad command, one
    short live recording."""
    response = httpx.post(
        f"{stack.base_url}/v1/audio/transcriptions",
        files={"file": ("jfk.webm", fixture_webm("jfk"), "audio/webm")},
        data={"model": "whisper-1", "response_format": "json"},
        timeout=120,
    )
    assert response.status_code == 200 and "country" in response.json()["text"], response.text
    with connect(stack.ws_url, max_size=None) as ws:
        send_json(ws, process_audio_message(fixture_webm("jfk"), language="en", request_id="obs-file"))
        assert finals(collect_until_complete(ws))
        send_json(ws, {"command": "no_such_command"})
        assert recv_json(ws)["code"] == "unknown_command"
        item = manifest()["jfk"]
        live = stream_live(ws, chunk_stream(fixture_webm("jfk"), item["duration_s"]), speed=2.0)
        assert finals(live.messages)


def test_every_metric_exists_and_moves(observed: tuple[Stack, Path]) -> None:
    stack, log_path = observed
    urls = endpoints(stack, log_path)
    before = {name: scrape(url if name != "worker" else f"{url}/metrics") for name, url in urls.items()}
    do_work(stack)
    time.sleep(0.5)  # the worker's skipped partials are counted after their replies
    after = {name: scrape(url if name != "worker" else f"{url}/metrics") for name, url in urls.items()}

    def moved(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    for service in ("gateway", "audio", "worker"):  # the default process collector everywhere
        assert value(after[service], "process_resident_memory_bytes") > 0, service
        assert has(after[service], "process_cpu_seconds_total"), service

    owners = {"gateway": ("s2t_gateway_", "s2t_live_", "s2t_queue_", "s2t_workers_alive"),
              "audio": ("s2t_audio_",), "worker": ("s2t_worker_",)}  # fmt: skip
    for service, samples in after.items():  # each service shows its own metrics only
        assert all(n.startswith(owners[service]) for n, _ in samples if n.startswith("s2t_")), service

    gateway = after["gateway"]
    assert has(gateway, "s2t_gateway_websocket_connections")
    assert moved("gateway", "s2t_gateway_websocket_messages_total", command="process_audio") == 1
    assert moved("gateway", "s2t_gateway_websocket_messages_total", command="start_real_recording") == 1
    assert moved("gateway", "s2t_gateway_websocket_messages_total", command="binary") >= 10
    assert moved("gateway", "s2t_gateway_transcripts_sent_total", final="true") >= 3
    assert moved("gateway", "s2t_gateway_transcripts_sent_total", final="false") >= 1
    assert moved("gateway", "s2t_gateway_transcript_latency_seconds_count") >= 3
    assert moved("gateway", "s2t_gateway_transcript_latency_seconds_sum") > 0
    assert moved("gateway", "s2t_gateway_errors_total", code="unknown_command") == 1
    assert has(gateway, "s2t_queue_depth_jobs") and value(gateway, "s2t_workers_alive") == 1
    assert {dict(ls)["queue"] for n, ls in gateway if n == "s2t_queue_depth_jobs"} == {
        "s2t-final",
        "s2t-partial",
    }
    assert moved("gateway", "s2t_live_first_partial_seconds_count") == 1
    assert moved("gateway", "s2t_live_final_latency_seconds_count") >= 1

    assert moved("audio", "s2t_audio_decode_duration_seconds_count") == 2
    assert moved("audio", "s2t_audio_decoded_seconds_total", mode="file") == pytest.approx(22.0, abs=1.0)
    assert moved("audio", "s2t_audio_decoded_seconds_total", mode="live") > 5
    assert moved("audio", "s2t_audio_utterances_total", mode="file") == 2
    assert moved("audio", "s2t_audio_utterances_total", mode="live") >= 1
    assert has(after["audio"], "s2t_audio_active_streams")
    assert value(after["audio"], "s2t_audio_active_streams") == 0

    model = {"model": "tiny.en"}
    assert moved("worker", "s2t_worker_transcription_duration_seconds_count", **model) >= 4
    assert moved("worker", "s2t_worker_audio_transcribed_seconds_total", **model) > 22
    assert moved("worker", "s2t_worker_real_time_factor_count", **model) >= 4
    assert moved("worker", "s2t_worker_jobs_total", kind="final", outcome="ok") >= 2
    live_jobs = moved("worker", "s2t_worker_jobs_total", kind="partial") + moved(
        "worker", "s2t_worker_jobs_total", kind="candidate"
    )
    assert live_jobs >= 1
    assert value(after["worker"], "s2t_worker_model_load_duration_seconds_count", **model) >= 1
    assert value(after["worker"], "s2t_worker_models_loaded") == 1
    assert has(after["worker"], "s2t_worker_busy")

    health = httpx.get(f"{urls['worker']}/health", timeout=10).json()
    assert health["models"] == ["tiny.en"] and health["busy"] is False and health["worker_id"]


def test_logs_are_json_with_ids_across_services(observed: tuple[Stack, Path]) -> None:
    _, log_path = observed
    lines = log_lines(log_path)
    raw = log_path.read_text().splitlines()
    assert len(lines) >= 0.9 * len(raw), "service logs must be JSON lines"
    by_service = {line.get("service") for line in lines}
    assert {"gateway", "audio_service", "whisper_service"} <= by_service

    # The uploaded file: one request id from the gateway through the audio service to the worker.
    received = [line for line in lines if line["event"] == "file_received"]
    assert received, "the gateway logs each file it takes"
    request_id = received[0]["request_id"]
    events = {(line["service"], line["event"]) for line in lines if line.get("request_id") == request_id}
    assert ("audio_service", "audio_processing_started") in events
    assert ("whisper_service", "transcription_completed") in events
    completed = next(line for line in lines if line["event"] == "transcription_completed")
    assert completed["utterance_id"] and completed["model"] == "tiny.en" and completed["level"] == "info"
    assert any(line["event"] == "model_loaded" for line in lines)
    # The live stream: its id is the request id of its stream and of every job it made.
    stream_id = next(line["stream_id"] for line in lines if line["event"] == "stream_started")
    assert any(line["service"] == "whisper_service" and line.get("request_id") == stream_id for line in lines)

    # No transcript text (nor audio) in logs at INFO and above.
    words = ("fellow americans", "ask not", "your country")
    for line in lines:
        text = json.dumps(line).lower()
        assert not any(w in text for w in words), line
        assert len(text) < 8000, "no log line should carry audio"


def test_health_503_without_workers_and_200_when_one_starts(observed: tuple[Stack, Path]) -> None:
    stack, _ = observed
    deadline = time.monotonic() + 15
    while True:  # ``busy`` is as of the worker's last heartbeat (every 5 s)
        health = httpx.get(f"{stack.base_url}/health", timeout=10)
        assert health.status_code == 200
        body = health.json()
        [worker] = body["live_workers"]
        if not worker["busy"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert body["redis"] == "ok" and body["status"] == "healthy"
    assert worker["models"] == ["tiny.en"] and worker["busy"] is False and worker["id"]

    os.kill(worker["pid"], signal.SIGSTOP)  # frozen: its heartbeat expires
    extra: subprocess.Popen[bytes] | None = None
    try:
        wait_for_health(stack, 503, timeout=30)
        unhealthy = httpx.get(f"{stack.base_url}/health", timeout=10).json()
        assert unhealthy["status"] == "unhealthy" and unhealthy["live_workers"] == []

        env = {
            **os.environ,
            "S2T_REDIS_URL": stack.redis_url,
            "S2T_WORKER_METRICS_PORT": str(free_port()),
            "S2T_CPU_THREADS": "1",
            "S2T_LOG_JSON": "true",
        }
        extra = subprocess.Popen(
            [sys.executable, "-m", "whisper_appliance.cli", "worker"], env=env, stderr=subprocess.DEVNULL
        )
        wait_for_health(stack, 200, timeout=90)
        [newcomer] = httpx.get(f"{stack.base_url}/health", timeout=10).json()["live_workers"]
        assert newcomer["pid"] == extra.pid and newcomer["id"] != worker["id"]
    finally:
        os.kill(worker["pid"], signal.SIGCONT)
        if extra is not None:
            extra.terminate()
            extra.wait(30)


def wait_for_health(stack: Stack, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (code := httpx.get(f"{stack.base_url}/health", timeout=10).status_code) != status:
        assert time.monotonic() < deadline, f"/health stayed {code}, expected {status}"
        time.sleep(0.5)
