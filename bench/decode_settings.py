"""Which decode settings give the most accurate transcript from the same weights?

Every candidate setting of the worker's backend runs in this process on the same loaded
model, so the only thing that differs between rows is the setting. Three groups of audio:

- ``full``: each speech fixture as a file: cut by the audio service's splitter
  (:func:`audio_service.splitter.split`, ``S2T_MAX_PIECE_SECONDS``), pieces decoded alone
  and joined, as the worker sees them;
- ``short``: pieces cut from them at pauses with the audio service's own VAD
  (:func:`audio_service.splitter.speech_regions`): the OSR list's ten sentences and jfk's
  four phrases, each with its own reference, padded with real audio the way the splitter
  pads (``EDGE_PAD_S``) unless the setting says otherwise; short clips sent as files look
  like these, and this is where the issue found this service behind others;
- ``live``: the fixtures cut by the live segmenter (as a stream is cut), each utterance
  decoded alone, their texts joined and scored against the whole reference.

WER is corpus-level (all errors of a group over all its reference words), after
``tests.helpers.normalize`` (lower case, punctuation dropped): the test suite's own
normalisation, the same for every setting. Numbers are not normalised: "4 hours" against
a reference "four hours" is an error. The service returns what the model writes, as
OpenAI's API does (Whisper's English normaliser is for evaluation only), and a
normaliser that maps numerals would score systems that write digits better without
changing what a client gets; the fixtures' references spell no numbers, and the
``digits`` column counts transcripts that contain one, so a setting that starts writing
digits shows. Compare other systems with this same normalisation.

    nice -n 19 .venv/bin/python -m bench.decode_settings [--models tiny.en,base] [--report out.json]

``base`` runs only the German fixtures (English ones are ``tiny.en``'s).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jiwer
import numpy as np
from tqdm import tqdm

from audio_service.segmenter import Segmenter
from audio_service.splitter import EDGE_PAD_S, speech_regions, split
from bench.common import machine, print_table, write_report
from shared.audio_format import SAMPLE_RATE
from shared.config import Settings, cpu_count
from tests.helpers import fixture_pcm, manifest, normalize
from whisper_service.backends import DecodeOptions, Transcriber, load_transcriber

#: Each fixture's short pieces: VAD regions closer than ``merge_gap_s`` are one piece (the
#: OSR reader pauses inside two sentences), and the references of the pieces in order.
PIECES: dict[str, tuple[float, list[str]]] = {
    "jfk": (
        0.0,
        [
            "And so my fellow Americans",
            "ask not",
            "what your country can do for you",
            "ask what you can do for your country",
        ],
    ),
    "osr_us_000_0034": (
        0.5,
        [
            "A gold ring will please most any girl.",
            "The long journey home took a year.",
            "She saw a cat in the neighbor's house.",
            "A pink shell was found on the sandy beach.",
            "Small children came to see him.",
            "The grass and bushes were wet with dew.",
            "The blind man counted his old coins.",
            "A severe storm tore down the barn.",
            "She called his name many times.",
            "When you hear the bell, come quickly.",
        ],
    ),
}


@dataclass(frozen=True)
class Setting:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # DecodeOptions fields
    pad_s: float = EDGE_PAD_S  # real audio kept either side of a short piece's speech
    silence_s: float = 0.0  # zeros added either side (a minimum window around short speech)
    context_s: float = 0.0  # live: this much of the stream before an utterance, heard but not emitted
    prompt_previous: bool = False  # live: the previous final's text as the prompt
    note: str = ""


_BASE: dict[str, Any] = {"beam_size": 5, "without_timestamps": False, "temperature_fallback": True}
_SPEACHES: dict[str, Any] = {**_BASE, "without_timestamps": True, "temperature_fallback": False}

SETTINGS = [
    Setting("ts+fallback b5", _BASE, note="files before this change"),
    Setting("nots+fallback b5", {**_BASE, "without_timestamps": True}, note="live finals before"),
    Setting(
        "nots+fallback b1", {**_BASE, "without_timestamps": True, "beam_size": 1}, note="partials before"
    ),
    Setting("ts+T0 b5", {**_BASE, "temperature_fallback": False}),
    Setting("nots+T0 b5", _SPEACHES, note="speaches' settings"),
    Setting("nots+T0 b1", {**_SPEACHES, "beam_size": 1}),
    Setting("nots+T0 b5 vad", {**_SPEACHES, "vad_filter": True}, note="model's own VAD spans"),
    Setting("ts+fallback b5 cond", {**_BASE, "condition_on_previous_text": True}),
    Setting("nots+T0 b5 pad0.1", _SPEACHES, pad_s=0.1),
    Setting("nots+T0 b5 pad1.0", _SPEACHES, pad_s=1.0, note="more real audio around short speech"),
    Setting("nots+T0 b5 sil1.0", _SPEACHES, silence_s=1.0, note="1 s of zeros either side"),
    Setting("ts+T0 b5 words", {**_BASE, "temperature_fallback": False, "word_timestamps": True}),
    Setting("ts+fallback b5 words", {**_BASE, "word_timestamps": True}, note="word timings before"),
    Setting("nots+T0 b5 ctx3", _SPEACHES, context_s=3.0, note="live: 3 s left context"),
    Setting("nots+T0 b5 ctx3 prompt", _SPEACHES, context_s=3.0, prompt_previous=True),
    Setting("nots+T0 b5 prompt", _SPEACHES, prompt_previous=True, note="live: previous final as prompt"),
]


@dataclass(frozen=True)
class Clip:
    fixture: str
    group: str  # full, short, live
    language: str
    reference: str
    pieces: tuple[np.ndarray, ...]  # decoded alone, texts joined (several only for live)
    contexts: tuple[np.ndarray, ...] = ()  # live: the audio before each piece (left context)


def _floats(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def short_pieces(audio: np.ndarray, merge_gap_s: float, pad_s: float) -> list[np.ndarray]:
    """The speech regions, merged across gaps under ``merge_gap_s``, each widened by
    ``pad_s`` of real audio but never past the middle of the pause to the next (as the
    splitter cuts)."""
    regions: list[list[int]] = []
    for start, end in speech_regions(audio):
        if regions and start - regions[-1][1] < merge_gap_s * SAMPLE_RATE:
            regions[-1][1] = end
        else:
            regions.append([start, end])
    pad, out = int(pad_s * SAMPLE_RATE), []
    for i, (start, end) in enumerate(regions):
        lo = 0 if i == 0 else (regions[i - 1][1] + start) // 2
        hi = len(audio) if i == len(regions) - 1 else (end + regions[i + 1][0]) // 2
        out.append(audio[max(lo, start - pad) : min(hi, end + pad)])
    return out


def live_pieces(pcm: np.ndarray, context_s: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Finals as the live segmenter cuts a stream fed a quarter second at a time, and the
    ``context_s`` of the stream before each (no further back than the stream's start)."""
    segmenter, finals = Segmenter(), []
    for i in range(0, len(pcm), 4000):
        finals += [u for u in segmenter.feed(pcm[i : i + 4000]) if u.final]
    finals += [u for u in segmenter.flush() if u.final]
    contexts = []
    for u in finals:
        start = round(u.start_s * SAMPLE_RATE)
        contexts.append(_floats(pcm[max(0, start - round(context_s * SAMPLE_RATE)) : start]))
    return [_floats(u.audio) for u in finals], contexts


def clips(fixture_ids: list[str], setting: Setting) -> list[Clip]:
    out = []
    for fixture_id in fixture_ids:
        item = manifest()[fixture_id]
        pcm = fixture_pcm(fixture_id)
        audio, language = _floats(pcm), item["language"]
        file_pieces = tuple(audio[p.start : p.end] for p in split(audio, Settings().max_piece_seconds))
        out.append(Clip(fixture_id, "full", language, item["reference"], file_pieces))
        if fixture_id in PIECES:
            merge_gap_s, references = PIECES[fixture_id]
            pieces = short_pieces(audio, merge_gap_s, setting.pad_s)
            if len(pieces) != len(references):
                raise SystemExit(f"{fixture_id}: {len(pieces)} pieces for {len(references)} references")
            zeros = np.zeros(int(setting.silence_s * SAMPLE_RATE), dtype=np.float32)
            for piece, reference in zip(pieces, references, strict=True):
                padded = np.concatenate([zeros, piece, zeros]) if len(zeros) else piece
                out.append(Clip(fixture_id, "short", language, reference, (padded,)))
        finals, contexts = live_pieces(pcm, setting.context_s)
        out.append(Clip(fixture_id, "live", language, item["reference"], tuple(finals), tuple(contexts)))
    return out


def with_noise(audio: np.ndarray, snr_db: float | None) -> np.ndarray:
    """White noise at ``snr_db`` below the clip's power (seeded by its length, so every
    setting hears the same noise): the clean fixtures leave most settings tied."""
    if snr_db is None or not len(audio):
        return audio
    noise = np.random.default_rng(len(audio)).standard_normal(len(audio)).astype(np.float32)
    power = float(np.mean(audio**2)) / 10 ** (snr_db / 10)
    return (audio + noise * np.sqrt(power)).astype(np.float32)


def corpus_wer(pairs: list[tuple[str, str]]) -> float | None:
    if not pairs:
        return None
    result = jiwer.process_words([normalize(r) for r, _ in pairs], [normalize(h) for _, h in pairs])
    errors = result.substitutions + result.deletions + result.insertions
    return round(errors / max(1, result.hits + result.substitutions + result.deletions), 3)


def run_setting(
    transcriber: Transcriber, setting: Setting, fixture_ids: list[str], snr_db: float | None = None
) -> dict[str, Any]:
    results: list[tuple[Clip, str]] = []
    started = time.perf_counter()
    for clip in clips(fixture_ids, setting):
        options = DecodeOptions(language=clip.language, **setting.options)
        texts: list[str] = []
        for i, piece in enumerate(clip.pieces):
            context = clip.contexts[i] if clip.contexts else np.zeros(0, dtype=np.float32)
            prompt = texts[-1] if setting.prompt_previous and texts else None
            these = dataclasses.replace(
                options, emit_after_s=len(context) / SAMPLE_RATE, initial_prompt=prompt
            )
            audio = with_noise(np.concatenate([context, piece]), snr_db)
            texts.append(transcriber.transcribe(audio, these).text)
        results.append((clip, " ".join(t for t in texts if t)))
    row: dict[str, Any] = {
        "setting": setting.name,
        "model": transcriber.name,
        "seconds": round(time.perf_counter() - started, 1),
        "digits": sum(bool(re.search(r"\d", text)) for _, text in results),
        "note": setting.note,
    }
    for group in ("full", "short", "live"):
        row[group] = corpus_wer([(c.reference, t) for c, t in results if c.group == group])
    for fixture_id in fixture_ids:
        for group in ("full", "short", "live"):
            pairs = [(c.reference, t) for c, t in results if c.fixture == fixture_id and c.group == group]
            if pairs:
                row[f"{group}:{fixture_id}"] = corpus_wer(pairs)
    row["texts"] = [{"fixture": c.fixture, "group": c.group, "text": t} for c, t in results]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny.en", help="comma-separated; base runs the German fixtures")
    parser.add_argument("--settings", default="", help="comma-separated setting names (default: all)")
    parser.add_argument("--threads", type=int, default=cpu_count())
    parser.add_argument("--snr-db", type=float, help="add white noise this far below each clip's power")
    parser.add_argument("--report", help="write the rows (and every transcript) as JSON here")
    args = parser.parse_args()
    chosen = [s for s in SETTINGS if not args.settings or s.name in args.settings.split(",")]
    rows: list[dict[str, Any]] = []
    for model in args.models.split(","):
        transcriber = load_transcriber(model, device="cpu", compute_type="default", cpu_threads=args.threads)
        fixture_ids = [f for f, item in manifest().items() if item["language"] in transcriber.languages]
        if transcriber.multilingual:
            fixture_ids = [f for f in fixture_ids if manifest()[f]["language"] != "en"]
        for setting in tqdm(chosen, desc=model, unit="setting"):
            rows.append(run_setting(transcriber, setting, fixture_ids, args.snr_db))
    noise = f"; white noise at {args.snr_db} dB SNR" if args.snr_db is not None else ""
    print(f"machine: {machine()}; WER corpus-level, tests.helpers.normalize, numbers not normalised{noise}")
    keys = sorted({k for r in rows for k in r if ":" in k})
    columns = [("setting", "setting", 22), ("model", "model", 9)]
    columns += [(g, g, 7) for g in ("full", "short", "live")]
    columns += [(k.replace("osr_us_000_0034", "osr").replace("thorsten_", "th_"), k, 17) for k in keys]
    columns += [("digits", "digits", 7), ("s", "seconds", 7)]
    print_table(rows, columns)
    write_report(args.report, rows, models=args.models, snr_db=args.snr_db)


if __name__ == "__main__":
    main()
