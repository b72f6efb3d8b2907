"""WhisperLive's protocol at the root path, driven by WhisperLive's own Python client
(PyPI ``whisper-live``, in a venv of its own: tests/client_venvs.py) against the whole
stack (``whisper-appliance up``), and bad input answered in WhisperLive's shape while
another client is served."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import websockets

from tests.client_venvs import whisperlive_python
from tests.conftest import Stack, private_redis, start_stack, stop_stack
from tests.helpers import ffmpeg_convert, fixture_bytes, manifest, wer
from whisper_appliance.embedded_redis import free_port

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).parent / "clients" / "whisperlive_client.py"
JFK = manifest()["jfk"]["reference"]


def run_client(
    stack: Stack, tmp_path: Path, lang: str = "en", seconds: float | None = None
) -> dict[str, Any]:
    wav = tmp_path / "jfk.wav"
    limit = ("-t", str(seconds)) if seconds else ()
    wav.write_bytes(ffmpeg_convert(fixture_bytes("jfk"), *limit, "-ac", "1", "-ar", "16000", "-f", "wav"))
    url = urlparse(stack.base_url)
    done = subprocess.run(
        [str(whisperlive_python()), str(CLIENT), str(url.hostname), str(url.port), str(wav), lang],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return {**json.loads(lines[-1]), "printed": "\n".join(lines[:-1])}


def settled(result: dict[str, Any]) -> str:
    return " ".join(seg["text"].strip() for seg in result["transcript"])


def test_whisperlive_client_streams_jfk(stack: Stack, tmp_path: Path) -> None:
    result = run_client(stack, tmp_path)
    assert result["backend"] == "faster_whisper" and not result["server_error"]
    text = settled(result)
    assert wer(JFK, text) <= 0.10, result
    # Incomplete segments (our partials) came before the first completed one.
    updates = result["updates"]
    first_completed = next(i for i, u in enumerate(updates) if any(s["completed"] for s in u["segments"]))
    assert any(not s["completed"] for u in updates[:first_completed] for s in u["segments"]), updates
    # The client's transcript is in order on the audio's timeline, and its SRT has every segment.
    times = [(float(s["start"]), float(s["end"])) for s in result["transcript"]]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times)) and times[-1][1] <= 11.5
    assert result["srt"].count("-->") == len(result["transcript"])


def test_bad_input_gets_whisperlive_errors_while_another_is_served(stack: Stack, tmp_path: Path) -> None:
    served: dict[str, Any] = {}
    good = threading.Thread(target=lambda: served.update(run_client(stack, tmp_path)))
    good.start()

    async def bad_clients() -> list[Any]:
        ws_url = stack.base_url.replace("http://", "ws://")
        out: list[Any] = []
        async with websockets.connect(ws_url) as ws:  # audio before the options
            await ws.send(b"\x00" * 4096)
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        async with websockets.connect(ws_url) as ws:  # options that are not JSON
            await ws.send("{uid: nope")
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        async with websockets.connect(ws_url) as ws:  # a format WhisperLive does not define
            await ws.send(json.dumps({"uid": "u-3", "language": "en", "audio_format": "mp3"}))
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return out

    before_options, not_json, bad_format = asyncio.run(bad_clients())
    good.join(120)
    assert before_options["status"] == "ERROR" and "options" in before_options["message"]
    assert not_json["status"] == "ERROR" and not_json["message"].startswith("invalid_json")
    assert bad_format == {"uid": "u-3", "status": "ERROR", "message": bad_format["message"]}
    assert "audio_format" in bad_format["message"]
    assert wer(JFK, settled(served)) <= 0.10, served


def test_whisperlive_client_told_why_it_is_refused(stack: Stack, tmp_path: Path) -> None:
    """tiny.en cannot transcribe German: the client gets ``status: ERROR`` and stops."""
    result = run_client(stack, tmp_path, lang="de", seconds=1.0)
    assert result["server_error"] is True and result["transcript"] == []
    # What the client prints for a server's ERROR (not a socket that failed to open).
    assert "Message from Server: unsupported_language" in result["printed"], result


def test_whisperlive_port_setting_serves_its_clients_on_their_own_port(tmp_path: Path) -> None:
    """``S2T_WHISPERLIVE_PORT`` (WhisperLive's clients default to 9090): the gateway also
    listens there, and WhisperLive's client gets its protocol's answers on it."""
    port = free_port()
    with private_redis() as url:
        running = start_stack(url, workers=1, extra_env={"S2T_WHISPERLIVE_PORT": str(port)}, quiet=True)
        try:
            at_port = Stack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", running.process, url)
            refused = run_client(at_port, tmp_path, lang="de", seconds=1.0)
            # WhisperLive's refusal (ERROR, German for tiny.en) came from the handler at "/".
            assert refused["server_error"] is True and refused["transcript"] == []
            assert "Message from Server: unsupported_language" in refused["printed"], refused
        finally:
            stop_stack(running)
