"""Fast tests of the pure speaker logic: clustering, labels, DER (no model, no services)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.speakers.clustering import cluster, label_clusters, letter, renumber_by_first_appearance
from shared.speakers.der import der


def _voices(
    rng: np.random.Generator, centres: list[np.ndarray], order: list[int], noise: float = 0.3
) -> np.ndarray:
    return np.stack(
        [centres[i] + noise * rng.standard_normal(centres[i].shape) / np.sqrt(len(centres[i])) for i in order]
    )


def _centres(rng: np.random.Generator, k: int, dim: int = 64) -> list[np.ndarray]:
    return [c / np.linalg.norm(c) for c in rng.standard_normal((k, dim))]


def test_clusters_three_voices_in_first_appearance_order() -> None:
    rng = np.random.default_rng(0)
    order = [2, 2, 0, 0, 1, 1, 2, 0, 1, 2, 0, 1] * 2
    ids = cluster(_voices(rng, _centres(rng, 3), order))
    assert ids == renumber_by_first_appearance(order)


def test_one_voice_is_one_speaker() -> None:
    rng = np.random.default_rng(1)
    assert set(cluster(_voices(rng, _centres(rng, 1), [0] * 20))) == {0}


def test_speaker_hints_bound_the_count() -> None:
    rng = np.random.default_rng(2)
    emb = _voices(rng, _centres(rng, 4), [0, 1, 2, 3] * 6)
    assert len(set(cluster(emb, max_speakers=2))) == 2
    assert len(set(cluster(_voices(rng, _centres(rng, 1), [0] * 12), min_speakers=2))) == 2
    with pytest.raises(ValueError, match="min_speakers"):
        cluster(emb, min_speakers=3, max_speakers=2)


def test_known_names_label_matching_clusters_others_get_letters() -> None:
    rng = np.random.default_rng(3)
    centres = _centres(rng, 3)
    order = [1, 0, 2, 1, 0, 2] * 4
    emb = _voices(rng, centres, order)
    ids = cluster(emb)
    labels = label_clusters(ids, emb, {"agent": centres[0]})
    expected = {1: "A", 0: "agent", 2: "B"}
    assert labels == [expected[i] for i in order]


def test_letters_after_z() -> None:
    assert [letter(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]


def test_der_perfect_and_mapping_free() -> None:
    ref = [(0.0, 2.0, "x"), (2.0, 4.0, "y")]
    assert der(ref, [(0.0, 2.0, "B"), (2.0, 4.0, "A")]) == 0.0


def test_der_counts_confusion_miss_and_false_alarm() -> None:
    ref = [(0.0, 4.0, "x"), (4.0, 8.0, "y")]
    # all one speaker: half of the speech confused (collar 0.25 s around 0, 4, 8 removed)
    assert der(ref, [(0.0, 8.0, "A")]) == pytest.approx(3.5 / 7.0, abs=0.01)
    # nothing said: all missed
    assert der(ref, []) == pytest.approx(1.0)
    # false alarm in a silence of the reference
    ref2 = [(0.0, 2.0, "x"), (4.0, 6.0, "x")]
    assert der(ref2, [(0.0, 6.0, "A")]) == pytest.approx(1.5 / 3.0, abs=0.01)
    # errors inside the collar are forgiven
    assert der(ref, [(0.0, 4.2, "A"), (4.2, 8.0, "B")]) == 0.0
