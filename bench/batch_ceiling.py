"""How much batching can gain at most on this machine, in-process, without the service.

A batch shares only the decoder's per-step work: every piece still needs its own
encoder pass over a full 30 s window, and its own cross-attention keys and values over
the encoder's 1500 frames. This times ``WhisperModel.encode`` for one window and
``model.generate`` (the decoder) alone and in a batch, and prints the best speed-up a
batch can give while keeping the text of one-by-one decoding:
(encode + generate alone) / (encode + generate per piece in a batch).

    .venv/bin/python -m bench.batch_ceiling [--model tiny.en] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import machine, print_table


def _median_ms(call: Callable[[], Any], runs: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fixture", default="jfk")
    args = parser.parse_args()

    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    from shared.models import materialize
    from tests.helpers import fixture_audio

    model = WhisperModel(materialize(args.model), device="cpu", compute_type="int8", cpu_threads=args.threads)
    window = pad_or_trim(model.feature_extractor(fixture_audio(args.fixture))[:, :3000])
    encoded = np.asarray(model.encode(window))
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
    encode_ms = _median_ms(lambda: model.encode(window), args.runs)

    print(f"machine: {machine()}; {args.model} {model.model.compute_type}, {args.threads} threads")
    rows = []
    for beam in (1, 5):
        per_piece = {}
        for size in (1, args.batch):
            batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate([encoded] * size)))
            prompts = [prompt] * size
            took = _median_ms(
                lambda b=batch, p=prompts, k=beam: model.model.generate(b, p, beam_size=k, max_length=448),
                args.runs,
            )
            per_piece[size] = took / size
        alone = encode_ms + per_piece[1]
        batched = encode_ms + per_piece[args.batch]
        rows.append(
            {
                "beam": beam,
                "encode": round(encode_ms),
                "gen_alone": round(per_piece[1]),
                "gen_batched": round(per_piece[args.batch]),
                "ceiling": f"x{alone / batched:.2f}",
            }
        )
    print(f"per piece, ms; batched = a batch of {args.batch}")
    columns = [("beam", "beam", 6), ("encode", "encode", 9), ("generate alone", "gen_alone", 16)]
    columns += [("generate batched", "gen_batched", 18), ("ceiling", "ceiling", 10)]
    print_table(rows, columns)


if __name__ == "__main__":
    main()
