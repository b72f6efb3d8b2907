"""A voice-agent framework's own OpenAI realtime transcription client on ``/v1/realtime``:
LiveKit Agents' ``openai.STT(use_realtime=True, base_url=...)`` (PyPI
``livekit-plugins-openai``, in a venv of its own: tests/client_venvs.py), run as its users
run it, streaming the fixtures in real time, in both of its modes:

- ``server_vad``: the service detects the turns (the plugin's own turn_detection);
- ``own_vad``: ``gpt-realtime-whisper`` with the plugin's Silero detector, which sends
  ``input_audio_buffer.commit`` at each end of speech (the mode issue 19 saw fail with
  ``input_audio_buffer_commit_empty`` and a lost last sentence).

Each must show every phrase arriving, no error, and a settled WER within +0.02 of
``/ws`` on the same audio (same stack, same model).
"""

from __future__ import annotations

import difflib
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from tests.client_venvs import livekit_python
from tests.conftest import Stack
from tests.helpers import (
    chunk_stream,
    ffmpeg_convert,
    fixture_pcm,
    joined_text,
    manifest,
    normalize,
    pcm_to_webm,
    stream_live,
    wer,
)

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).parent / "clients" / "livekit_stt_client.py"
RATE = 16000
OSR_S = 15.0  # the first four Harvard sentences


def phrases() -> list[str]:
    osr = manifest()["osr_us_000_0034"]["reference"].split(". ")[:4]
    return [manifest()["jfk"]["reference"], *(s.rstrip(".") + "." for s in osr)]


def audio() -> np.ndarray:
    """jfk, a second of silence, OSR's first four sentences, 1.5 s of silence (16 kHz)."""
    gap, tail = np.zeros(RATE, np.int16), np.zeros(RATE * 3 // 2, np.int16)
    return np.concatenate(
        [fixture_pcm("jfk"), gap, fixture_pcm("osr_us_000_0034")[: int(OSR_S * RATE)], tail]
    )


def run_livekit(stack: Stack, mode: str, pcm: np.ndarray) -> dict[str, Any]:
    pcm24 = ffmpeg_convert(
        pcm.tobytes(), "-ar", "24000", "-f", "s16le", input_args=("-f", "s16le", "-ar", str(RATE), "-ac", "1")
    )
    done = subprocess.run(
        [str(livekit_python()), str(CLIENT), f"{stack.base_url}/v1", "unused", mode],
        input=pcm24,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def ws_text(stack: Stack, pcm: np.ndarray) -> str:
    with connect(stack.ws_url, max_size=None) as ws:
        result = stream_live(ws, chunk_stream(pcm_to_webm(pcm), len(pcm) / RATE), speed=2.0)
    return joined_text(result.messages)


def phrases_missing(text: str) -> list[str]:
    """Phrases of which fewer than half the words are found (in order) in ``text``."""
    hyp = normalize(text).split()
    missing = []
    ref_words = [normalize(p).split() for p in phrases()]
    flat = [w for p in ref_words for w in p]
    matched = set()
    for block in difflib.SequenceMatcher(a=flat, b=hyp, autojunk=False).get_matching_blocks():
        matched.update(range(block.a, block.a + block.size))
    at = 0
    for phrase, words in zip(phrases(), ref_words, strict=True):
        if sum(1 for n in range(at, at + len(words)) if n in matched) * 2 < len(words):
            missing.append(phrase)
        at += len(words)
    return missing


@pytest.fixture(scope="module")
def ws_baseline(stack: Stack) -> str:
    return ws_text(stack, audio())


@pytest.mark.parametrize("mode", ["server_vad", "own_vad"])
def test_livekit_realtime_stt(stack: Stack, ws_baseline: str, mode: str) -> None:
    reference = " ".join(phrases())
    got = run_livekit(stack, mode, audio())
    text = " ".join(f["text"] for f in got["finals"])
    print(
        f"{mode}: WER {wer(reference, text):.3f} (/ws {wer(reference, ws_baseline):.3f}), "
        f"{len(got['finals'])} finals, {got['interims']} interims, errors {got['errors']}: {text!r}"
    )
    assert not got["errors"], got["errors"]
    assert not phrases_missing(text), (phrases_missing(text), text)
    assert wer(reference, text) <= wer(reference, ws_baseline) + 0.02, (text, ws_baseline)
    assert got["interims"] > 0, "interim text while speaking"
    if mode == "own_vad":
        # completed after the commit: the plugin commits at its detector's end of speech
        lags = [
            f["t"] - max(t for t in got["speech_ends"] if t <= f["t"])
            for f in got["finals"]
            if any(t <= f["t"] for t in got["speech_ends"])
        ]
        print(
            f"own_vad: {len(got['speech_ends'])} commits, completed after commit: median "
            f"{statistics.median(lags):.2f} s, max {max(lags):.2f} s"
        )
        assert len(lags) == len(got["finals"])
