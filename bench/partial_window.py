"""Partials on a shorter encoder window: what they cost and how their text compares.

faster-whisper pads every input to Whisper's 30 s window, so a partial of 2 s costs its
worker as much encoder time as 30 s of speech. This bench cuts the English fixtures into
the partials a live stream sends (the audio service's own segmenter, same cadence) and
decodes each one as a worker does (greedy, no timestamps) on the 30 s window and on
windows of ``max(MIN, its length + PAD)`` seconds (whole seconds: shorter ones make
Whisper repeat itself to fill the window), in one process, one thread.
Per window it prints:

- ms per partial (median) and the speed-up over 30 s;
- WER against the 30 s window's text of the same partial (how much the text differs);
- WER of the utterance's last partial against its final (30 s, beam 5): how close the
  last text before the final is;
- flicker: over consecutive partials of one utterance, the share of the earlier one's
  words that the next does not keep as its prefix (0: each partial only adds words).

    .venv/bin/python -m bench.partial_window [--fixtures jfk,osr_us_000_0034] [--windows 10:2,15:2]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from audio_service.segmenter import Segmenter, SegmenterOptions, Utterance
from bench.common import machine, print_table
from shared.config import Settings
from tests.helpers import fixture_pcm, normalize, wer
from whisper_service.backends import DecodeOptions
from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber


def utterances(fixture: str) -> list[list[Utterance]]:
    """Per utterance of the fixture streamed in 0.25 s chunks: its partials, then its final."""
    pcm = fixture_pcm(fixture)
    settings = Settings()
    segmenter = Segmenter(
        SegmenterOptions(
            partial_every_s=settings.partial_interval_s, first_partial_s=settings.first_partial_s
        )
    )
    events: list[Utterance] = []
    for i in range(0, len(pcm), 4000):
        events += segmenter.feed(pcm[i : i + 4000])
    events += segmenter.flush()
    out: dict[int, list[Utterance]] = {}
    for e in events:
        if e.kind != "candidate":
            out.setdefault(e.index, []).append(e)
    return [u for u in out.values() if u[-1].final]


def flicker(texts: list[str]) -> float | None:
    shares = []
    for a, b in itertools.pairwise(texts):
        words_a, words_b = normalize(a).split(), normalize(b).split()
        if not words_a:
            continue
        kept = 0
        for x, y in zip(words_a, words_b, strict=False):
            if x != y:
                break
            kept += 1
        shares.append(1 - kept / len(words_a))
    return statistics.mean(shares) if shares else None


def disagreement(reference: str, hypothesis: str) -> float:
    """WER, where an empty reference counts 1 for any hypothesis and 0 for none."""
    return wer(reference, hypothesis) if reference.strip() else float(bool(hypothesis.strip()))


@dataclass
class Run:
    times: list[float]  # seconds per partial
    texts: list[list[str]]  # per utterance, its partials' texts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixtures", default="jfk,osr_us_000_0034")
    parser.add_argument(
        "--windows",
        default="10:2,15:2",
        help="MIN:PAD,...: a partial's window is max(MIN, its length + PAD) seconds, whole seconds",
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--repeats", type=int, default=3, help="decodes per partial; the fastest counts")
    args = parser.parse_args()
    model = FasterWhisperTranscriber(args.model, device="cpu", compute_type="default", cpu_threads=1)
    groups = [u for f in args.fixtures.split(",") for u in utterances(f)]
    partial = DecodeOptions(language="en", beam_size=1, without_timestamps=True, temperature_fallback=False)
    final = replace(partial, beam_size=5)
    finals = [model.transcribe(g[-1].audio.astype(np.float32) / 32768, final).text for g in groups]

    def run(spec: tuple[float, float] | None) -> Run:
        out = Run([], [])
        for group in groups:
            texts = []
            for u in group[:-1]:
                audio = u.audio.astype(np.float32) / 32768
                window = 0.0
                if spec is not None:
                    window = min(30, max(spec[0], math.ceil(len(audio) / 16000 + spec[1])))
                options = replace(partial, encoder_window_s=window)
                best, text = math.inf, ""
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    text = model.transcribe(audio, options).text
                    best = min(best, time.perf_counter() - t)
                out.times.append(best)
                texts.append(text)
            out.texts.append(texts)
        return out

    base = run(None)
    rows = []
    specs = [tuple(float(x) for x in w.split(":")) for w in args.windows.split(",")]
    for spec in [None, *specs]:
        got = base if spec is None else run((spec[0], spec[1]))
        pairs = [
            (a, b)
            for group_a, group_b in zip(base.texts, got.texts, strict=True)
            for a, b in zip(group_a, group_b, strict=True)
        ]
        last = [(f, g[-1]) for f, g in zip(finals, got.texts, strict=True) if g]
        flickers = [x for g in got.texts if (x := flicker(g)) is not None]
        median = statistics.median(got.times)
        rows.append(
            {
                "window": "30 s" if spec is None else f"max({spec[0]:g}, len+{spec[1]:g}) s",
                "partials": len(pairs),
                "ms": round(median * 1000, 1),
                "speedup": round(statistics.median(base.times) / median, 2),
                "wer_vs_30s": round(statistics.mean(disagreement(a, b) for a, b in pairs), 3),
                "last_vs_final": round(statistics.mean(disagreement(f, t) for f, t in last), 3),
                "flicker": round(statistics.mean(flickers), 3) if flickers else None,
            }
        )
    print(f"machine: {machine()}; model {args.model}; 1 thread; {args.fixtures}; {len(groups)} utterances")
    print_table(
        rows,
        [
            ("window", "window", 18),
            ("partials", "partials", 9),
            ("ms/partial", "ms", 11),
            ("speed-up", "speedup", 9),
            ("WER vs 30 s", "wer_vs_30s", 12),
            ("last vs final", "last_vs_final", 14),
            ("flicker", "flicker", 8),
        ],
    )


if __name__ == "__main__":
    main()
