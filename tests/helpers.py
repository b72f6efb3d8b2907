"""Test helpers: fixtures on disk, WebM encoding as a browser would send it, WER, a
small WebSocket client that collects one request's replies."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jiwer
import numpy as np
from websockets.sync.client import ClientConnection

from audio_service.decoder import DecodedAudio, decode
from audio_service.ffmpeg_binary import ffmpeg_path
from audio_service.seekable import memory_file
from tests.webm_chunks import chunk_by_time

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("S2T_FIXTURES", REPO.parent / "shared" / "fixtures" / "speech"))


def manifest() -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in json.loads((FIXTURES / "manifest.json").read_text())}


def fixture_bytes(fixture_id: str) -> bytes:
    return (FIXTURES / manifest()[fixture_id]["path"]).read_bytes()


def ffmpeg_convert(data: bytes, *output_args: str, input_args: tuple[str, ...] = ()) -> bytes:
    """Convert in memory through ffmpeg's pipes (tests keep audio off the disk too);
    ``input_args`` describe headerless input such as raw PCM."""
    command = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", *input_args, "-i", "pipe:0"]
    result = subprocess.run(
        [*command, *output_args, "pipe:1"],
        input=data,
        capture_output=True,
        check=True,
    )
    return result.stdout


def to_plain_mp4(data: bytes) -> bytes:
    """AAC in an MP4 with its index after the samples, as phones and most encoders write
    it: ffmpeg must seek to write one, so it writes into an in-memory file."""
    with memory_file(b"") as (fd, path):
        command = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-vn"]
        subprocess.run(
            [*command, "-c:a", "aac", "-f", "mp4", "-y", path],
            input=data,
            pass_fds=(fd,),
            capture_output=True,
            check=True,
        )
        return os.pread(fd, os.fstat(fd).st_size, 0)


def to_webm(data: bytes) -> bytes:
    """WebM/Opus mono 48 kHz, what Chrome's MediaRecorder produces."""
    return ffmpeg_convert(
        data, "-vn", "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "32k", "-f", "webm"
    )


def fixture_webm(fixture_id: str) -> bytes:
    return to_webm(fixture_bytes(fixture_id))


def fixture_pcm(fixture_id: str) -> np.ndarray:
    """16 kHz mono int16 samples, decoded by the audio service's own decoder (pipes only)."""
    return np.frombuffer(_decoded(fixture_id).pcm, dtype="<i2")


def _decoded(fixture_id: str) -> DecodedAudio:
    return asyncio.run(decode(fixture_bytes(fixture_id), max_seconds=3600))


def pcm_to_webm(pcm: np.ndarray) -> bytes:
    return to_webm_from(pcm.astype("<i2").tobytes(), ("-f", "s16le", "-ar", "16000", "-ac", "1"))


def to_webm_from(data: bytes, input_args: tuple[str, ...]) -> bytes:
    return ffmpeg_convert(
        data,
        "-ac",
        "1",
        "-ar",
        "48000",
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-f",
        "webm",
        input_args=input_args,
    )


def chunk_stream(encoded: bytes, duration_s: float, chunk_s: float = 0.25) -> list[bytes]:
    """Cut an encoded stream into pieces of ``chunk_s`` of audio each, the way
    MediaRecorder's ``start(250)`` hands out bytes (boundaries fall anywhere): WebM by its
    blocks' timestamps (:mod:`tests.webm_chunks`), other formats in even byte pieces."""
    if (by_time := chunk_by_time(encoded, chunk_s)) is not None:
        return by_time
    count = max(1, round(duration_s / chunk_s))
    size = -(-len(encoded) // count)
    return [encoded[i : i + size] for i in range(0, len(encoded), size)]


@dataclass
class LiveResult:
    messages: list[dict[str, Any]]
    received_at: list[float]  # seconds since the first chunk was sent, per message
    sent_until: float  # when the last chunk was sent
    ended: bool = True  # whether ``recording: false`` came within the timeout


def stream_live(
    ws: ClientConnection,
    chunks: list[bytes],
    *,
    chunk_s: float = 0.25,
    speed: float = 1.0,
    language: str | None = "en",
    model: str | None = None,
    timeout: float = 120.0,
    require_end: bool = True,
    start_fields: dict[str, Any] | None = None,
) -> LiveResult:
    """start_real_recording, the chunks paced as a browser sends them, stop_recording, and
    every message until ``recording: false``. ``require_end=False`` (benchmarks of an
    overloaded service) returns what came within ``timeout`` instead of failing. ``model``:
    the recording's model (unset: the service's default); ``start_fields``: more fields of
    start_real_recording (``diarize``)."""
    start = {"command": "start_real_recording", "language": language, "format": "webm"}
    start.update(start_fields or {})
    send_json(ws, {**start, "model": model} if model else start)
    started = recv_json(ws)
    assert started.get("recording") is True, started
    messages: list[dict[str, Any]] = []
    times: list[float] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                message = recv_json(ws, timeout=timeout)
            except Exception:
                return
            messages.append(message)
            times.append(time.monotonic() - t0)
            if message.get("recording") is False:
                done.set()

    t0 = time.monotonic()
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    for i, chunk in enumerate(chunks):
        ws.send(chunk)
        delay = t0 + (i + 1) * chunk_s / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sent_until = time.monotonic() - t0
    send_json(ws, {"command": "stop_recording"})
    done.wait(timeout)
    thread.join(1)
    assert done.is_set() or not require_end, "no 'recording: false' after stop_recording"
    return LiveResult(messages, times, sent_until, done.is_set())


def fixture_audio(fixture_id: str) -> np.ndarray:
    """16 kHz mono float32, decoded by the audio service's own decoder (pipes only)."""
    return _decoded(fixture_id).as_float32()


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis) or "<empty>"))


def send_json(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def process_audio_message(audio: bytes, **fields: Any) -> dict[str, Any]:
    return {"command": "process_audio", "audio_data": base64.b64encode(audio).decode(), **fields}


def recv_json(ws: ClientConnection, timeout: float = 60.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def collect_until_complete(
    ws: ClientConnection, request_id: str | None = None, timeout: float = 120.0
) -> list[dict[str, Any]]:
    """Every message up to and including "Processing complete" (or a request-level error)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        message = recv_json(ws, timeout=max(0.1, deadline - time.monotonic()))
        messages.append(message)
        if request_id is not None and message.get("request_id") not in (request_id, None):
            continue
        if message.get("type") == "status" and message.get("message") == "Processing complete":
            return messages
        if message.get("type") == "error" and message.get("utterance_id") is None:
            return messages


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "transcript" and m.get("final")]


def joined_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(m["transcript"] for m in finals(messages))


def load_model(ws: ClientConnection, name: str, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Send ``load_model`` and return every reply up to ``model_loaded`` or an ``error``."""
    send_json(ws, {"command": "load_model", "model_name": name})
    messages = [recv_json(ws, timeout=timeout)]
    while messages[-1]["type"] == "status":
        messages.append(recv_json(ws, timeout=timeout))
    return messages


def worker_models(base_url: str) -> list[list[str]]:
    """The models each live worker's heartbeat lists (``/api/status``)."""
    status = httpx.get(f"{base_url}/api/status", timeout=10).json()
    return [w["models"] for w in status["workers"]]


def wait_for_worker_models(base_url: str, expected: list[list[str]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := worker_models(base_url)) != expected:
        assert time.monotonic() < deadline, f"workers list {seen}, expected {expected}"
        time.sleep(0.25)
