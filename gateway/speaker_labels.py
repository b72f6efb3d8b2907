"""A diarized file's speaker labels, made once where all its pieces meet.

Each piece's worker sent back its speech windows' embeddings (and the first piece the
known speakers' reference embeddings); here they are merged in file order and clustered
together (:mod:`shared.speakers.turns`), so a file split across workers keeps one
labelling; then every transcript segment gets its speaker, cut by its words' timings
where the speaker changes inside it.
Clustering is numpy work of up to a second for long files: callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.speakers import wire
from shared.speakers.turns import Turn, merge, speaker_for, turns_from_windows

#: A silence this long inside one voice's speech ends its labelled segment: Whisper's
#: segments run on across pauses, which a diarization does not count as speech.
PAUSE_S = 0.5


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


def speech_turns(turns: Sequence[Turn], pause_s: float = PAUSE_S) -> list[Turn]:
    """The turns with same-speaker gaps under ``pause_s`` closed (breaths, stops between
    words); longer silences stay out, as a diarization scores them."""
    out: list[Turn] = []
    for start, end, who in turns:
        if out and out[-1][2] == who and start - out[-1][1] < pause_s:
            out[-1] = (out[-1][0], end, who)
        else:
            out.append((start, end, who))
    return out


def _nearest(t: float, spans: Sequence[Turn]) -> int:
    return min(range(len(spans)), key=lambda k: max(spans[k][0] - t, t - spans[k][1], 0.0))


def split_segment(seg: dict[str, Any], turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """A transcript segment as segments of one speaker's speech each. Whisper's segments run
    across pauses and changes of voice; the speaker turns say where each voice speaks, so
    the segment is cut into the turns it overlaps and each word goes to the turn nearest its
    middle (turns that get no word are dropped). Without word timings the segment keeps the
    speaker that overlaps it most, trimmed to the speech."""
    start, end = float(seg["start"]), float(seg["end"])
    inside = [(max(a, start), min(b, end), w) for a, b, w in turns if a < end and b > start]
    words = seg.get("words") or []
    if not inside:
        return [{**seg, "speaker": speaker_for(start, end, turns)}]
    if not words:
        who = speaker_for(start, end, turns)
        return [{**seg, "start": inside[0][0], "end": inside[-1][1], "speaker": who}]
    owned: dict[int, list[dict[str, Any]]] = {}
    for word in words:
        middle = (float(word["start"]) + float(word["end"])) / 2
        owned.setdefault(_nearest(middle, inside), []).append(word)
    parts = []
    for k in sorted(owned):
        a, b, who = inside[k]
        if parts and parts[-1]["speaker"] == who and a - parts[-1]["end"] < PAUSE_S:
            parts[-1]["end"], parts[-1]["words"] = b, [*parts[-1]["words"], *owned[k]]
            continue
        parts.append({**seg, "start": a, "end": b, "words": owned[k], "speaker": who})
    if len(parts) == 1:
        return [{**parts[0], "text": seg["text"], "words": words}]
    for part in parts:
        part["text"] = " ".join(str(w["word"]).strip() for w in part["words"])
    return parts


def label_pieces(pieces: Sequence[dict[str, Any]], turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Copies of the pieces whose segments carry ``speaker`` (split where it changes); each
    piece also gets the speaker of most of its time (one label per ``/ws``-style final)."""
    out = []
    for piece in pieces:
        speech = speech_turns(turns)
        segments = [part for seg in piece.get("segments") or [] for part in split_segment(seg, speech)]
        labelled = {**piece, "segments": segments}
        if "start" in piece and "end" in piece and (piece.get("transcript") or segments):
            labelled["speaker"] = speaker_for(float(piece["start"]), float(piece["end"]), turns)
        out.append(labelled)
    return out
