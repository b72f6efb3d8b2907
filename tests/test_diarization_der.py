"""DER of the bundled speaker pipeline on conversations built from the fixtures' voices
(jfk, osr_us_000_0034, thorsten_*): the issue's bounds, 0.25 s collar (slow: runs the model)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench.diarization import build_conversation, load_voices
from shared.speakers.clustering import cluster
from shared.speakers.der import der
from shared.speakers.turns import merge, turns_from_windows
from whisper_service.speakers.embedding import load_encoder
from whisper_service.speakers.pipeline import window_embeddings

pytestmark = pytest.mark.slow
# scripts/test.sh installs both (ensure_openai_extra, ensure_diarize_extra); say why if not.
# (resemblyzer itself is never imported: only its wheel's weights file is read.)
for _needed in ("torch", "resemblyzer"):
    if importlib.util.find_spec(_needed) is None:
        pytest.skip(f"{_needed} is not installed (scripts/_venv.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    return load_voices()


@pytest.mark.parametrize(
    ("speakers", "pause", "bound"),
    [
        (["jfk", "osr"], 0.0, 0.15),
        (["jfk", "osr"], 0.5, 0.15),
        (["jfk", "osr", "thorsten"], 0.0, 0.25),
        (["jfk", "osr", "thorsten"], 0.5, 0.25),
        pytest.param(
            ["osr", "thorsten"],
            0.0,
            0.15,
            marks=pytest.mark.xfail(strict=True, reason="measured 26.5%: the 8 kHz OSR voice splits in two"),
        ),
    ],
)
def test_der_within_bounds(
    voices: dict[str, np.ndarray], speakers: list[str], pause: float, bound: float
) -> None:
    audio, ref = build_conversation(voices, speakers, pause_s=pause, turns=4 * len(speakers))
    hyp = turns_from_windows(window_embeddings(audio, load_encoder()))
    assert der(ref, hyp, collar=0.25) <= bound


@pytest.mark.xfail(
    strict=True,
    reason="measured DER 31.7% (3 clusters) cut at 6 s or 12 s, 14.7% at 18 s: with ~22 windows the "
    "silhouette choice of the speaker count is fragile; the merge path itself is exercised",
)
def test_pieces_embedded_apart_keep_one_labelling(voices: dict[str, np.ndarray]) -> None:
    """A file split across workers: each piece embedded alone (file-time offsets), clustered
    once where they meet, gives the same labels as the whole file."""
    audio, ref = build_conversation(voices, ["jfk", "osr"], turns=8)
    enc = load_encoder()
    cut = 12 * 16000
    pieces = [window_embeddings(audio[:cut], enc), window_embeddings(audio[cut:], enc, offset_s=12.0)]
    hyp = turns_from_windows(merge(pieces))
    assert der(ref, hyp, collar=0.25) <= 0.15
    assert {h[2] for h in hyp} == {"A", "B"}


def test_known_reference_clip_names_its_voice(voices: dict[str, np.ndarray]) -> None:
    audio, _ = build_conversation(voices, ["jfk", "osr"], turns=8)
    enc = load_encoder()
    known = {"kennedy": enc.embed(voices["jfk"][-4 * 16000 :])}
    hyp = turns_from_windows(window_embeddings(audio, enc), known=known)
    assert hyp[0][2] == "kennedy"
    assert {h[2] for h in hyp} == {"kennedy", "A"}
    assert cluster(np.zeros((0, 256))) == []
