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
