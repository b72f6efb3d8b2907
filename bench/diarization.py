"""Diarization benchmark (issue 17): DER with a 0.25 s collar on conversations built from
the speech fixtures' different voices (jfk, osr_us_000_0034, thorsten_*), alternating
turns, with and without pauses; and the embedding time per audio second.

    PYTHONPATH=$PWD .venv/bin/python -m bench.diarization [--share] [--turns-only] [--voice-change]

``--share``: the worker time spent on speakers, for a file and for a live stream.
``--voice-change``: whether one live utterance's own windows could show a change of voice
inside it (they cannot, with this encoder: README, "Speaker labels").

``der_turns``: the speaker turns alone; ``der_served_segments``: the segments the API
serves (tiny.en with word timings, cut into each voice's speech by the gateway's rule).

The reference says who speaks where: a turn is the speech (same energy rule as the
pipeline, on the clean clip alone) of the chunk taken from that speaker's recording.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gateway.speaker_labels import label_pieces
from shared.speakers.der import der
from shared.speakers.turns import Turn, turns_from_windows
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


def served_segments(audio: np.ndarray, turns: list[Turn], asr: Any) -> list[Turn]:
    """The (start, end, speaker) of the segments the API serves for ``audio``: decoded as
    unlabelled, its words aligned as the worker does, cut into each voice's speech by the
    gateway's rule."""
    from whisper_service.backends import DecodeOptions

    options = DecodeOptions(language="en")
    result = asr.align_words(audio, asr.transcribe(audio, options), options)
    segments = [
        {
            "start": seg.start,
            "end": seg.end,
            "text": seg.text,
            "words": [{"word": w.word, "start": w.start, "end": w.end} for w in seg.words or []],
        }
        for seg in result.segments
    ]
    piece = {"transcript": "", "start": 0.0, "end": len(audio) / SAMPLE_RATE, "segments": segments}
    return [(s["start"], s["end"], s["speaker"]) for s in label_pieces([piece], turns)[0]["segments"]]


def run_cases(model: str | None = "tiny.en") -> list[dict[str, object]]:
    """Per case: DER of the speaker turns (the windows' clustering alone) and, with
    ``model``, of the segments the API serves (transcribed, then cut into speech by turns);
    speakers found, and the embedding time per audio second."""
    enc = load_encoder()
    voices = load_voices()
    asr = None
    if model is not None:
        from whisper_service.backends import load_transcriber

        asr = load_transcriber(model, device="cpu", compute_type="default", cpu_threads=2)
    out: list[dict[str, object]] = []
    for name, speakers, pause in CASES:
        audio, ref = build_conversation(voices, speakers, pause_s=pause, turns=4 * len(speakers))
        t0 = time.perf_counter()
        win = window_embeddings(audio, enc)
        hyp = turns_from_windows(win)
        took = time.perf_counter() - t0
        row: dict[str, object] = {
            "case": name,
            "speakers": len(speakers),
            "found": len({h[2] for h in hyp}),
            "audio_s": round(len(audio) / SAMPLE_RATE, 1),
            "der_turns": round(der(ref, hyp, collar=0.25), 4),
            "diarize_s_per_audio_s": round(took / (len(audio) / SAMPLE_RATE), 4),
        }
        if asr is not None:
            row["der_served_segments"] = round(der(ref, served_segments(audio, hyp, asr), collar=0.25), 4)
        out.append(row)
    return out


def worker_share(model: str = "tiny.en", threads: int = 2) -> dict[str, object]:
    """Share of worker time spent on speakers for one file, timed the way the service runs
    a diarized piece: the 3-speaker conversation decoded as unlabelled, its words aligned
    (for the cut at each change of voice) and its windows embedded (the worker's speaker
    step); the clustering (the gateway's, once per file) is timed apart. Best of three
    runs each."""
    from whisper_service.backends import DecodeOptions, load_transcriber

    audio, _ = build_conversation(load_voices(), ["jfk", "osr", "thorsten"], turns=12)
    asr = load_transcriber(model, device="cpu", compute_type="default", cpu_threads=threads)
    enc = load_encoder()
    asr.transcribe(audio[: 16000 * 5], DecodeOptions(language="en"))  # warm-up
    window_embeddings(audio[: 16000 * 5], enc)

    def best(step: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return min(times)

    options = DecodeOptions(language="en")
    decoded = asr.transcribe(audio, options)
    plain = best(lambda: asr.transcribe(audio, options))
    align = best(lambda: asr.align_words(audio, decoded, options))
    win = window_embeddings(audio, enc)
    embed = best(lambda: window_embeddings(audio, enc))
    clustering = best(lambda: turns_from_windows(win))
    total = plain + align + embed
    return {
        "audio_s": round(len(audio) / SAMPLE_RATE, 1),
        "transcribe_s": round(plain, 3),
        "align_words_s": round(align, 3),
        "embed_s": round(embed, 3),
        "cluster_s": round(clustering, 3),
        "embed_share_of_worker": round(embed / total, 4),
        "speakers_share_of_worker": round((align + embed) / total, 4),
    }


def live_share(model: str = "tiny.en", threads: int = 2) -> dict[str, object]:
    """Share of worker time spent on speakers for a live stream: each 3 s turn of the
    2-voice conversation is one final, decoded as live finals are (no timestamp tokens)
    and its voice windows embedded, timed apart; summed over the stream."""
    from whisper_service.backends import DecodeOptions, load_transcriber

    voices = load_voices()
    audio, _ = build_conversation(voices, ["jfk", "osr"], turns=8)
    asr = load_transcriber(model, device="cpu", compute_type="default", cpu_threads=threads)
    enc = load_encoder()
    options = DecodeOptions(language="en", without_timestamps=True, condition_on_previous_text=False)
    asr.transcribe(audio[: 16000 * 3], options)  # warm-up
    window_embeddings(audio[: 16000 * 3], enc)
    turn = 3 * SAMPLE_RATE
    transcribe_s = embed_s = 0.0
    for start in range(0, len(audio) - turn + 1, turn):
        piece = audio[start : start + turn]
        t0 = time.perf_counter()
        asr.transcribe(piece, options)
        t1 = time.perf_counter()
        window_embeddings(piece, enc)
        t2 = time.perf_counter()
        transcribe_s, embed_s = transcribe_s + t1 - t0, embed_s + t2 - t1
    return {
        "live_audio_s": round(len(audio) / SAMPLE_RATE, 1),
        "finals": len(audio) // turn,
        "transcribe_s": round(transcribe_s, 3),
        "embed_s": round(embed_s, 3),
        "embed_share_of_worker": round(embed_s / (transcribe_s + embed_s), 4),
    }


def _best_split_cosine(embeddings: np.ndarray, least: int = 2) -> float:
    """The lowest cosine between the mean embeddings before and after any split of an
    utterance's windows into a first and a second part of at least ``least`` windows."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(float(np.linalg.norm(v)), 1e-8)

    return min(
        (
            float(unit(embeddings[:k].mean(axis=0)) @ unit(embeddings[k:].mean(axis=0)))
            for k in range(least, len(embeddings) - least + 1)
        ),
        default=1.0,
    )


def voice_change_separation() -> list[dict[str, object]]:
    """Could a live utterance's own windows tell a change of voice inside it? For 4-8 s
    pieces of one voice and for two voices back to back (2-4 s each, no pause), the best
    split's cosine (:func:`_best_split_cosine`); per threshold, how many one-voice
    utterances it would split and how many two-voice ones it would leave whole."""
    import itertools

    voices, enc, sr = load_voices(), load_encoder(), SAMPLE_RATE
    one: list[float] = []
    two: list[float] = []
    for audio in voices.values():
        for seconds in (4, 6, 8):
            for at in range(0, len(audio) - seconds * sr, 2 * sr):
                w = window_embeddings(audio[at : at + seconds * sr], enc)
                if len(w.starts) >= 4:
                    one.append(_best_split_cosine(w.embeddings))
    for first, second in itertools.permutations(voices, 2):
        for a, b in ((2, 2), (2, 3), (3, 3), (3, 4), (4, 4)):
            for at in (0, 4):
                both = np.concatenate(
                    [voices[first][at * sr : (at + a) * sr], voices[second][at * sr : (at + b) * sr]]
                )
                w = window_embeddings(both, enc)
                if len(w.starts) >= 4:
                    two.append(_best_split_cosine(w.embeddings))
    return [
        {
            "threshold": t,
            "one_voice_split": f"{sum(c < t for c in one)}/{len(one)}",
            "two_voices_left_whole": f"{sum(c >= t for c in two)}/{len(two)}",
            "one_voice_min": round(min(one), 3),
            "two_voices_max": round(max(two), 3),
        }
        for t in (0.5, 0.55, 0.6, 0.65)
    ]


def main() -> None:
    import sys

    if "--voice-change" in sys.argv:
        for row in voice_change_separation():
            print(json.dumps(row))
        return
    for row in run_cases(None if "--turns-only" in sys.argv else "tiny.en"):
        print(json.dumps(row))
    if "--share" in sys.argv:
        print(json.dumps(worker_share()))
        print(json.dumps(live_share()))


if __name__ == "__main__":
    main()
