"""A diarized file's speaker labels, made once where all its pieces meet.

Each piece's worker sent back its speech windows' embeddings (and the first piece the
known speakers' reference embeddings); here they are merged in file order and clustered
together (:mod:`shared.speakers.turns`), so a file split across workers keeps one
labelling, and then every transcript segment gets the speaker that overlaps it most.
Clustering is numpy work of up to a second for long files: callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.speakers import wire
from shared.speakers.turns import Turn, merge, speaker_for, turns_from_windows


@dataclass(frozen=True)
class SpeakerHints:
    """What the client said about the speakers (checked by the endpoint)."""

    known_names: list[str]
    min_speakers: int | None = None
    max_speakers: int | None = None


def file_turns(piece_speakers: Sequence[Any], hints: SpeakerHints) -> list[Turn]:
    """The file's (start, end, label) turns from its pieces' reply fields (None for a piece
    without speaker data, e.g. the no-speech piece). Raises ValueError on malformed data."""
    present = [p for p in piece_speakers if p is not None]
    windows = merge([wire.load_windows(p) for p in present])
    refs = next((r for p in present if (r := wire.load_references(p)) is not None), None)
    known = None
    if hints.known_names:
        if refs is None or len(refs) != len(hints.known_names):
            raise ValueError("the reference embeddings do not match the known speaker names")
        known = dict(zip(hints.known_names, refs, strict=True))
    return turns_from_windows(
        windows, known=known, min_speakers=hints.min_speakers, max_speakers=hints.max_speakers
    )


def label_pieces(pieces: Sequence[dict[str, Any]], turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Copies of the pieces whose segments carry ``speaker``; each piece also gets the
    speaker of most of its time (``/ws``-style finals show one label per piece)."""
    out = []
    for piece in pieces:
        segments = [
            {**seg, "speaker": speaker_for(float(seg["start"]), float(seg["end"]), turns)}
            for seg in piece.get("segments") or []
        ]
        labelled = {**piece, "segments": segments}
        if "start" in piece and "end" in piece and (piece.get("transcript") or segments):
            labelled["speaker"] = speaker_for(float(piece["start"]), float(piece["end"]), turns)
        out.append(labelled)
    return out
