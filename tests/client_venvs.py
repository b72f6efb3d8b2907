"""Virtual environments for third-party clients whose pins conflict with this project's,
built on first use and run in a subprocess.

They live outside the checkout (``~/.cache/whisper-appliance/client-venvs``, or
``S2T_CLIENT_VENVS``), like pip's own cache: a clean checkout (CI's) reuses the ones an
earlier run built with the same pins instead of spending about a minute rebuilding them,
and a machine without them builds them. A lock keeps two runs from building one at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(
    os.environ.get("S2T_CLIENT_VENVS") or Path.home() / ".cache" / "whisper-appliance" / "client-venvs"
)
#: whisper-live's client without its server's stack (torch, openvino, faster-whisper==1.2.0).
WHISPERLIVE = ("whisper-live==0.10.0",)
WHISPERLIVE_NEEDS = ("websocket-client>=1.6", "numpy", "av", "scipy")
#: LiveKit Agents' OpenAI realtime STT and its Silero detector: they pin their own openai,
#: aiohttp and the WebRTC runtime (livekit), which this project must not share.
LIVEKIT = ("livekit-agents==1.8.9", "livekit-plugins-openai==1.8.9", "livekit-plugins-silero==1.8.9")


def _client_venv(name: str, installs: tuple[tuple[str, ...], ...]) -> Path:
    """The venv's python, (re)built when it is missing or was built with other pins."""
    venv = ROOT / name
    python = venv / "bin" / "python"
    done = venv / ".installed"
    wanted = "".join(" ".join(step) + "\n" for step in installs)
    ROOT.mkdir(parents=True, exist_ok=True)
    with (ROOT / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text() == wanted:
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for step in installs:
            subprocess.run([*pip, *step], check=True)
        done.write_text(wanted)
    return python


def whisperlive_python() -> Path:
    """WhisperLive's client venv (about 30 s to build)."""
    return _client_venv("whisperlive", (("--no-deps", *WHISPERLIVE), WHISPERLIVE_NEEDS))


def livekit_python() -> Path:
    """LiveKit Agents' venv (``tests/clients/livekit_stt_client.py``; about 30 s to build)."""
    return _client_venv("livekit", (LIVEKIT,))
