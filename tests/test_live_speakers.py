"""Fast tests of a live session's speaker labels (shared/speakers/online.py): stable per
voice, new voices lettered in order, known voices by name, short utterances never a voice."""

from __future__ import annotations

import numpy as np

from shared.speakers.online import SessionSpeakers

DIM = 32


def _utterance(centre: np.ndarray, rng: np.random.Generator, windows: int = 3) -> np.ndarray:
    return np.stack([centre + 0.25 * rng.standard_normal(DIM) / np.sqrt(DIM) for _ in range(windows)])


def _centres(k: int, seed: int = 0) -> np.ndarray:
    c = np.random.default_rng(seed).standard_normal((k, DIM))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_each_voice_keeps_its_label_all_session() -> None:
    rng, voices = np.random.default_rng(1), _centres(3)
    session = SessionSpeakers()
    order = [1, 0, 1, 2, 0, 2, 1, 0]
    assert [session.assign(_utterance(voices[v], rng)) for v in order] == [
        {1: "A", 0: "B", 2: "C"}[v] for v in order
    ]


def test_known_voice_by_name_others_lettered() -> None:
    rng, voices = np.random.default_rng(2), _centres(2)
    session = SessionSpeakers({"agent": voices[1]})
    assert [session.assign(_utterance(voices[v], rng)) for v in (0, 1, 0)] == ["A", "agent", "A"]


def test_short_or_empty_utterance_opens_no_voice() -> None:
    rng, voices = np.random.default_rng(3), _centres(2)
    session = SessionSpeakers()
    assert session.assign(np.zeros((0, DIM))) is None
    assert session.assign(_utterance(voices[0], rng)) == "A"
    assert session.assign(_utterance(voices[1], rng, windows=1)) == "A"  # one window: nearest
    assert session.assign(_utterance(voices[1], rng)) == "B"


def test_known_voices_given_later_name_what_follows_and_letters_go_on() -> None:
    """A live stream's reference embeddings come with its first final's reply: known
    voices added then name later utterances, and a letter once given stays."""
    rng, voices = np.random.default_rng(4), _centres(3)
    session = SessionSpeakers()
    assert session.assign(_utterance(voices[0], rng)) == "A"
    session.know({"agent": voices[1]})
    session.know({"agent": voices[2]})  # the same name again changes nothing
    assert [session.assign(_utterance(voices[v], rng)) for v in (1, 0, 2)] == ["agent", "A", "B"]
