"""Run LiveKit Agents' own OpenAI realtime transcription client
(``livekit.plugins.openai.STT(use_realtime=True)``, PyPI ``livekit-plugins-openai``)
against ``/v1/realtime``, pointed here by its documented ``base_url`` option and nothing
else, and print what it got as JSON.

Runs in its own virtual environment (``tests/client_venvs.py``): livekit-agents pins an
``openai`` and ``aiohttp`` of its own and brings the WebRTC runtime. The audio (PCM16,
mono, 24 kHz) comes on stdin and is pushed as 100 ms ``rtc.AudioFrame`` s in real time,
as a room's microphone track would deliver it.

Modes, as LiveKit's users run them:

- ``server_vad``: a model with server-side turns (``gpt-4o-transcribe``); the plugin
  sends its own default ``turn_detection`` (server_vad, 350 ms silence).
- ``own_vad``: a client-side-turn model (``gpt-realtime-whisper``) with the plugin's
  Silero detector (``livekit-plugins-silero``, bundled weights): on each end of speech
  the plugin sends ``input_audio_buffer.commit`` (the mode the issue saw break).

Usage: python livekit_stt_client.py BASE_URL API_KEY MODE < audio.pcm
Prints: {"finals": [{"t", "text"}], "interims": n, "speech_ends": [t], "errors": [...]}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

RATE = 24000
CHUNK = RATE // 10  # samples per 100 ms frame
SETTLE_S = 6.0  # after the audio: time for the last item's completed


async def run(base_url: str, api_key: str, mode: str, audio: bytes) -> dict[str, Any]:
    from livekit import rtc
    from livekit.agents import stt as agents_stt
    from livekit.agents.utils import http_context
    from livekit.plugins import openai

    out: dict[str, Any] = {"finals": [], "interims": 0, "speech_ends": [], "errors": []}
    started = time.monotonic()

    def now() -> float:
        return round(time.monotonic() - started, 3)

    async with http_context.open():
        if mode == "own_vad":  # its own detector commits; a model served with client turns
            from livekit.plugins import silero

            own: dict[str, Any] = {"model": "gpt-realtime-whisper", "vad": silero.VAD.load()}
        else:
            own = {"model": "gpt-4o-transcribe"}
        stt = openai.STT(base_url=base_url, api_key=api_key, language="en", use_realtime=True, **own)
        stt.on(
            "error",
            lambda e: out["errors"].append(
                {"t": now(), "error": repr(e.error), "recoverable": e.recoverable}
            ),
        )
        stream = stt.stream()

        async def read() -> None:
            async for event in stream:
                if event.type == agents_stt.SpeechEventType.FINAL_TRANSCRIPT:
                    out["finals"].append({"t": now(), "text": event.alternatives[0].text})
                elif event.type == agents_stt.SpeechEventType.INTERIM_TRANSCRIPT:
                    out["interims"] += 1
                elif event.type == agents_stt.SpeechEventType.END_OF_SPEECH:
                    out["speech_ends"].append(now())

        reader = asyncio.create_task(read())
        for n, at in enumerate(range(0, len(audio), CHUNK * 2)):
            data = audio[at : at + CHUNK * 2]
            frame = rtc.AudioFrame(data, RATE, 1, len(data) // 2)
            stream.push_frame(frame)
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))
        await asyncio.sleep(SETTLE_S)
        await stream.aclose()
        reader.cancel()
        await stt.aclose()
    return out


def main() -> None:
    base_url, api_key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    audio = sys.stdin.buffer.read()
    print(json.dumps(asyncio.run(run(base_url, api_key, mode, audio))))


if __name__ == "__main__":
    main()
