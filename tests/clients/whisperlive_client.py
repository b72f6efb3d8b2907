"""Run WhisperLive's own Python client (``whisper_live.client.TranscriptionClient``, PyPI
``whisper-live``) on a WAV file against a server, and print what it got as JSON.

Runs in its own virtual environment (``tests/client_venvs.py``): whisper-live pins
faster-whisper, torch, openvino and more that this project must not share. Only its
client's real needs are installed (websocket-client, numpy, av, scipy); PyAudio, which
the client imports for microphones and speakers, is replaced by a stand-in without
devices (the client already copes with a machine that has none: it streams the file
with ``mute_audio_playback``).

Usage: python whisperlive_client.py HOST PORT WAV [LANG]
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any


def _no_audio_devices() -> None:
    module: Any = types.ModuleType("pyaudio")
    module.paInt16 = 8

    class PyAudio:
        def open(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("no audio devices on this machine")

        def terminate(self) -> None:
            return None

    module.PyAudio = PyAudio
    sys.modules["pyaudio"] = module


def main() -> None:
    host, port, wav = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lang = sys.argv[4] if len(sys.argv) > 4 else "en"
    _no_audio_devices()
    from whisper_live.client import TranscriptionClient

    updates: list[dict[str, Any]] = []
    started = time.monotonic()

    def on_update(text: str, segments: list[dict[str, Any]]) -> None:
        updates.append({"t": time.monotonic() - started, "segments": segments})

    client = TranscriptionClient(
        host,
        port,
        lang=lang,
        model="small",
        use_vad=True,
        log_transcription=False,
        mute_audio_playback=True,
        transcription_callback=on_update,
        output_transcription_path="out.srt",
    )
    # As shipped, the client waits 15 s after the last changed text before END_OF_AUDIO.
    client(wav)
    inner = client.client
    print(
        json.dumps(
            {
                "transcript": inner.transcript,
                "last_segment": inner.last_segment,
                "updates": updates,
                "server_error": inner.server_error,
                "waiting": inner.waiting,
                "backend": getattr(inner, "server_backend", None),
                "srt": Path("out.srt").read_text() if inner.transcript else "",
                "audio_s": time.monotonic() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
