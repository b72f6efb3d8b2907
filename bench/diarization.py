"""Diarization benchmark (issue 17): DER with a 0.25 s collar on conversations built from
the speech fixtures' different voices (jfk, osr_us_000_0034, thorsten_*), alternating
turns, with and without pauses; and the embedding time per audio second.

    PYTHONPATH=$PWD .venv/bin/python -m bench.diarization [--share]

The reference says who speaks where: a turn is the speech (same energy rule as the
pipeline, on the clean clip alone) of the chunk taken from that speaker's recording.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from shared.speakers.der import der
from shared.speakers.turns import turns_from_windows
from whisper_service.speakers.embedding import SAMPLE_RATE, decode_audio, load_encoder
from whisper_service.speakers.pipeline import FRAME_S, speech_mask, window_embeddings

FIXTURES = Path("/work/shared/fixtures/speech")
VOICES = {
    "jfk": ["jfk.flac"],
    "osr": ["OSR_us_000_0034_8k.wav"],
    "thorsten": ["thorsten_1386ecbb98a8f46dd0b0eb75d68ee0d0.wav", "thorsten_sample03-gt.wav"],
}


def load_voices(root: Path = FIXTURES) -> dict[str, np.ndarray]:
    """Each speaker's recordings, decoded to 16 kHz and concatenated."""
    return {
        k: np.concatenate([decode_audio((root / f).read_bytes()) for f in files])
        for k, files in VOICES.items()
    }


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def build_conversation(
    voices: dict[str, np.ndarray],
    speakers: list[str],
    *,
    turn_s: float = 3.0,
    pause_s: float = 0.0,
    turns: int = 10,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Alternating turns of ``turn_s`` from each speaker's recording (consecutive chunks of
    it, wrapping), ``pause_s`` of silence between turns; returns audio and reference turns."""
    n = int(turn_s * SAMPLE_RATE)
    pos = dict.fromkeys(speakers, 0)
    parts: list[np.ndarray] = []
    ref: list[tuple[float, float, str]] = []
    t = 0
    for k in range(turns):
        who = speakers[k % len(speakers)]
        src = voices[who]
        if pos[who] + n > len(src):
            pos[who] = 0
        chunk = src[pos[who] : pos[who] + n]
        pos[who] += n
        for a, b in _runs(speech_mask(chunk)):
            ref.append((t / SAMPLE_RATE + a * FRAME_S, t / SAMPLE_RATE + b * FRAME_S, who))
        parts.append(chunk)
        t += len(chunk)
        gap = int(pause_s * SAMPLE_RATE)
        if gap and k < turns - 1:
            parts.append(np.zeros(gap, dtype=np.float32))
            t += gap
    return np.concatenate(parts), ref


CASES = [
    ("2 speakers, no pause", ["jfk", "osr"], 0.0),
    ("2 speakers, 0.5 s pauses", ["jfk", "osr"], 0.5),
    ("2 speakers (osr, thorsten), no pause", ["osr", "thorsten"], 0.0),
    ("3 speakers, no pause", ["jfk", "osr", "thorsten"], 0.0),
    ("3 speakers, 0.5 s pauses", ["jfk", "osr", "thorsten"], 0.5),
]


def run_cases() -> list[dict[str, object]]:
    """DER and speakers found per case, with the embedding time per audio second."""
    enc = load_encoder()
    voices = load_voices()
    out: list[dict[str, object]] = []
    for name, speakers, pause in CASES:
        audio, ref = build_conversation(voices, speakers, pause_s=pause, turns=4 * len(speakers))
        t0 = time.perf_counter()
        win = window_embeddings(audio, enc)
        hyp = turns_from_windows(win)
        took = time.perf_counter() - t0
        out.append(
            {
                "case": name,
                "speakers": len(speakers),
                "found": len({h[2] for h in hyp}),
                "audio_s": round(len(audio) / SAMPLE_RATE, 1),
                "der": round(der(ref, hyp, collar=0.25), 4),
                "diarize_s_per_audio_s": round(took / (len(audio) / SAMPLE_RATE), 4),
            }
        )
    return out


def worker_share(model: str = "tiny.en", threads: int = 2) -> dict[str, object]:
    """Share of worker time spent on speakers for one file: the 3-speaker conversation
    transcribed by the bundled model, then embedded and clustered, timed apart."""
    from whisper_service.backends import DecodeOptions, load_transcriber

    audio, _ = build_conversation(load_voices(), ["jfk", "osr", "thorsten"], turns=12)
    asr = load_transcriber(model, device="cpu", compute_type="default", cpu_threads=threads)
    enc = load_encoder()
    asr.transcribe(audio[: 16000 * 5], DecodeOptions(language="en"))  # warm-up
    t0 = time.perf_counter()
    asr.transcribe(audio, DecodeOptions(language="en"))
    t1 = time.perf_counter()
    turns_from_windows(window_embeddings(audio, enc))
    t2 = time.perf_counter()
    return {
        "audio_s": round(len(audio) / SAMPLE_RATE, 1),
        "transcribe_s": round(t1 - t0, 3),
        "speakers_s": round(t2 - t1, 3),
        "speaker_share": round((t2 - t1) / (t2 - t0), 4),
    }


def main() -> None:
    import sys

    for row in run_cases():
        print(json.dumps(row))
    if "--share" in sys.argv:
        print(json.dumps(worker_share()))


if __name__ == "__main__":
    main()
