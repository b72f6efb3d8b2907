"""Virtual environments for third-party clients whose pins conflict with this project's,
built once under ``.venv-clients/`` (gitignored) and run in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / ".venv-clients"
#: whisper-live's client without its server's stack (torch, openvino, faster-whisper==1.2.0).
WHISPERLIVE = ("whisper-live==0.10.0",)
WHISPERLIVE_NEEDS = ("websocket-client>=1.6", "numpy", "av", "scipy")
#: LiveKit Agents' OpenAI realtime STT and its Silero detector: they pin their own openai,
#: aiohttp and the WebRTC runtime (livekit), which this project must not share.
LIVEKIT = ("livekit-agents==1.8.9", "livekit-plugins-openai==1.8.9", "livekit-plugins-silero==1.8.9")


def whisperlive_python() -> Path:
    """The client venv's python, built on first use (about a minute)."""
    venv = ROOT / "whisperlive"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if done.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", *WHISPERLIVE], check=True)
    subprocess.run([*pip, *WHISPERLIVE_NEEDS], check=True)
    done.write_text("\n".join(WHISPERLIVE + WHISPERLIVE_NEEDS) + "\n")
    return python


def livekit_python() -> Path:
    """LiveKit Agents' venv python (``tests/clients/livekit_stt_client.py``), built on
    first use (about two minutes); rebuilt when the pins change."""
    venv = ROOT / "livekit"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    wanted = "\n".join(LIVEKIT) + "\n"
    if done.exists() and done.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *LIVEKIT], check=True)
    done.write_text(wanted)
    return python
