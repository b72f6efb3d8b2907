"""Test helpers: fixtures on disk, WebM encoding as a browser would send it, WER, a
small WebSocket client that collects one request's replies."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jiwer
import numpy as np
from websockets.sync.client import ClientConnection

from audio_service.decoder import decode
from audio_service.ffmpeg_binary import ffmpeg_path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("S2T_FIXTURES", REPO.parent / "shared" / "fixtures" / "speech"))


def manifest() -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in json.loads((FIXTURES / "manifest.json").read_text())}


def fixture_bytes(fixture_id: str) -> bytes:
    return (FIXTURES / manifest()[fixture_id]["path"]).read_bytes()


def ffmpeg_convert(data: bytes, *output_args: str) -> bytes:
    """Convert in memory through ffmpeg's pipes (tests keep audio off the disk too)."""
    result = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *output_args, "pipe:1"],
        input=data,
        capture_output=True,
        check=True,
    )
    return result.stdout


def to_webm(data: bytes) -> bytes:
    """WebM/Opus mono 48 kHz, what Chrome's MediaRecorder produces."""
    return ffmpeg_convert(
        data, "-vn", "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "32k", "-f", "webm"
    )


def fixture_webm(fixture_id: str) -> bytes:
    return to_webm(fixture_bytes(fixture_id))


def fixture_audio(fixture_id: str) -> np.ndarray:
    """16 kHz mono float32, decoded by the audio service's own decoder (pipes only)."""
    return asyncio.run(decode(fixture_bytes(fixture_id), max_seconds=3600)).as_float32()


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


def collect_until_complete(ws: ClientConnection, request_id: str | None = None,
                           timeout: float = 120.0) -> list[dict[str, Any]]:  # fmt: skip
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
