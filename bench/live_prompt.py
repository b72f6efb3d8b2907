"""Does the previous utterance's text help as the prompt for the next one?

Cuts the fixtures into utterances with the live segmenter (as a stream would be cut),
transcribes each with the live final settings, once without a prompt and once with
the stream's recent settled text as ``initial_prompt``, and prints the word error rate
of both against the references. The service uses no prompt unless this shows a gain.

    .venv/bin/python -m bench.live_prompt [--model tiny.en]
"""

from __future__ import annotations

import argparse

import numpy as np

from audio_service.segmenter import Segmenter
from bench.common import machine
from shared.config import cpu_count
from tests.helpers import fixture_pcm, manifest, wer
from whisper_service.backends import DecodeOptions
from whisper_service.backends.faster_whisper_backend import FasterWhisperTranscriber

PROMPT_WORDS = 40  # how much recent text is offered, at most


def utterances(pcm: np.ndarray) -> list[np.ndarray]:
    segmenter = Segmenter()
    out = []
    for i in range(0, len(pcm), 4000):
        out += [u.audio for u in segmenter.feed(pcm[i : i + 4000]) if u.final]
    return out + [u.audio for u in segmenter.flush() if u.final]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--fixtures", default="jfk,osr_us_000_0034")
    args = parser.parse_args()
    model = FasterWhisperTranscriber(
        args.model, device="auto", compute_type="default", cpu_threads=cpu_count()
    )
    print(f"machine: {machine()}; model {args.model}; live final settings (beam 5, no timestamps)")
    print(f"{'fixture':<18}{'utterances':>11}{'WER no prompt':>15}{'WER with prompt':>17}")
    for fixture_id in args.fixtures.split(","):
        item = manifest()[fixture_id]
        texts: dict[bool, list[str]] = {False: [], True: []}
        pieces = utterances(fixture_pcm(fixture_id))
        for audio in pieces:
            floats = audio.astype(np.float32) / 32768.0
            for prompted in (False, True):
                recent = " ".join(" ".join(texts[prompted]).split()[-PROMPT_WORDS:]) or None
                options = DecodeOptions(
                    language=item["language"], beam_size=5, without_timestamps=True,
                    initial_prompt=recent if prompted else None,
                )  # fmt: skip
                texts[prompted].append(model.transcribe(floats, options).text)
        no, yes = (wer(item["reference"], " ".join(texts[p])) for p in (False, True))
        print(f"{fixture_id:<18}{len(pieces):>11}{no:>15.3f}{yes:>17.3f}")


if __name__ == "__main__":
    main()
