"""The pieces under ``/v1/realtime`` on real audio: raw input without ffmpeg, speech
events, manual turns (commit) and clear in the segmenter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audio_service.pcm_input import G711_ALAW, G711_TABLES, G711_ULAW, PCM16_24K, RawToPcm
from audio_service.segmenter import Segmenter, SegmenterOptions, SpeechEvent, Utterance
from gateway.realtime.config import ConfigError, TranscriptionConfig, apply_beta_update, apply_ga_update
from gateway.realtime.deltas import DeltaTracker
from tests.helpers import ffmpeg_convert, fixture_bytes, fixture_pcm

RAW_INPUT = ("-f", "s16le", "-ar", "16000", "-ac", "1")


@pytest.mark.parametrize(("fmt", "ffmpeg_format"), [(G711_ULAW, "mulaw"), (G711_ALAW, "alaw")])
def test_g711_expands_exactly_as_ffmpeg_does(fmt: str, ffmpeg_format: str) -> None:
    coded = ffmpeg_convert(fixture_bytes("jfk"), "-ac", "1", "-ar", "8000", "-f", ffmpeg_format)
    expected = np.frombuffer(
        ffmpeg_convert(coded, "-f", "s16le", input_args=("-f", ffmpeg_format, "-ar", "8000", "-ac", "1")),
        "<i2",
    )

    assert np.array_equal(G711_TABLES[fmt][np.frombuffer(coded, np.uint8)], expected)


def test_pcm16_24k_chunks_resample_seamlessly() -> None:
    """Odd chunk sizes (split samples included) give the same 16 kHz audio as one block."""
    raw = ffmpeg_convert(fixture_bytes("jfk"), "-ac", "1", "-ar", "24000", "-f", "s16le")
    whole = RawToPcm(PCM16_24K)
    one = np.concatenate([whole.convert(raw), whole.finish()])
    chunked = RawToPcm(PCM16_24K)
    rng = np.random.default_rng(0)
    pieces, at = [], 0
    while at < len(raw):
        size = int(rng.integers(1, 9000))
        pieces.append(chunked.convert(raw[at : at + size]))
        at += size
    pieces.append(chunked.finish())
    assert np.array_equal(np.concatenate(pieces), one)
    assert abs(len(one) - len(raw) // 2 * 2 // 3) <= 2
    reference = fixture_pcm("jfk").astype(np.float64)  # ffmpeg's own 16 kHz decode
    n = min(len(reference), len(one))
    assert np.corrcoef(reference[:n], one[:n].astype(np.float64))[0, 1] > 0.99


@pytest.mark.slow  # loads the Silero VAD model (in-process, ~0.1 s): models stay out of the fast tier
def test_without_pause_detection_only_a_commit_ends_the_utterance() -> None:
    pcm = fixture_pcm("jfk")
    segmenter = Segmenter(SegmenterOptions(pause_s=math.inf))
    events = [e for i in range(0, len(pcm), 1600) for e in segmenter.feed_events(pcm[i : i + 1600])]
    assert not [e for e in events if isinstance(e, Utterance) and e.final]
    assert [e.kind for e in events if isinstance(e, SpeechEvent)] == ["speech_started"]
    flushed = segmenter.flush_events()
    assert [type(e).__name__ for e in flushed] == ["SpeechEvent", "Utterance"]
    assert flushed[1].final and flushed[1].end_s > 9.0


@pytest.mark.slow  # loads the Silero VAD model (in-process, ~0.1 s): models stay out of the fast tier
def test_speech_events_bracket_each_utterance_and_clear_drops_the_open_one() -> None:
    pcm = fixture_pcm("jfk")
    segmenter = Segmenter()
    events = [e for i in range(0, len(pcm), 1600) for e in segmenter.feed_events(pcm[i : i + 1600])]
    events += segmenter.flush_events()
    finals = [e for e in events if isinstance(e, Utterance) and e.final]
    speech = [e for e in events if isinstance(e, SpeechEvent)]
    assert len(finals) >= 2
    for final in finals:  # started ... stopped, then the final, for the same index
        kinds = [e.kind for e in speech if e.index == final.index and e.kept]
        assert kinds[:1] == ["speech_started"] and kinds[-1] == "speech_stopped"
        at = next(n for n, e in enumerate(events) if e is final)
        before = events[at - 1]
        assert isinstance(before, SpeechEvent) and (before.kind, before.index) == (
            "speech_stopped",
            final.index,
        )
        start = next(e for e in speech if e.kind == "speech_started" and e.index == final.index)
        assert start.sample == round(final.start_s * 16000)

    fresh = Segmenter()
    mid = [e for i in range(0, 16000 * 2, 1600) for e in fresh.feed_events(pcm[i : i + 1600])]
    assert any(isinstance(e, SpeechEvent) and e.kind == "speech_started" for e in mid)
    cleared = fresh.clear()
    assert cleared is not None and not cleared.kept
    assert not fresh.flush_events()  # nothing left to commit


def test_session_updates_are_checked_before_anything_changes() -> None:
    config = TranscriptionConfig(model="whisper-1")
    with pytest.raises(ConfigError) as err:
        apply_ga_update(config, {"type": "realtime"}, "tiny.en")
    assert err.value.param == "session.type"
    with pytest.raises(ConfigError) as err:
        apply_ga_update(
            config,
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "tiny.en",
        )
    assert err.value.param == "session.audio.input.format.rate"
    with pytest.raises(ConfigError) as err:
        apply_ga_update(
            config,
            {"type": "transcription", "audio": {"input": {"turn_detection": {"type": "push_to_talk"}}}},
            "tiny.en",
        )
    assert err.value.param == "session.audio.input.turn_detection.type"
    with pytest.raises(ConfigError) as err:
        semantic = {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}
        apply_ga_update(config, {"type": "transcription", "audio": {"input": semantic}}, "tiny.en")
    assert err.value.param == "session.audio.input.turn_detection.eagerness"
    with pytest.raises(ConfigError) as err:
        apply_ga_update(
            config,
            {"type": "transcription", "audio": {"input": {"transcription": {"language": "de"}}}},
            "tiny.en",
        )
    assert err.value.code == "unsupported_language"  # tiny.en is English-only
    updated = apply_beta_update(
        config,
        {
            "input_audio_format": "g711_ulaw",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
        },
        "tiny.en",
    )
    assert updated.format == G711_ULAW and updated.turn_detection is not None
    assert updated.turn_detection.silence_duration_ms == 800
    assert updated.vad().pause_s == 0.8
    assert updated.ga_session()["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_semantic_vad_is_served_as_a_pause_by_eagerness_and_echoed_as_server_vad() -> None:
    """No turn-taking model here: the eagerness picks how long a pause ends the turn."""
    config = TranscriptionConfig(model="whisper-1")
    pauses = {}
    for eagerness in ("low", "auto", "high"):
        semantic = {"turn_detection": {"type": "semantic_vad", "eagerness": eagerness}}
        updated = apply_ga_update(config, {"type": "transcription", "audio": {"input": semantic}}, "tiny.en")
        pauses[eagerness] = updated.vad().pause_s
        assert updated.ga_session()["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert pauses["high"] < pauses["auto"] < pauses["low"]


def test_deltas_send_only_agreed_or_settled_words_and_never_contradict_sent_text() -> None:
    """The snapshots ``bench.realtime_deltas`` found contradicted before (tiny.en on jfk
    and OSR): a first partial's recent words wait for a second reading or a pause."""
    tracker = DeltaTracker()
    # "And so my fellow men" (1.8 s read) then "And so am I fellow Americans.": "my" is
    # not sent, as its audio is recent and no earlier partial read it
    assert tracker.partial("a", "And so...", seconds=0.8) is None
    assert tracker.partial("a", "And so my fellow men", seconds=1.8) == "And so"
    assert tracker.partial("a", "And so am I fellow Americans.", whole=True) == " am I fellow Americans."
    assert tracker.final("a", "And so am I fellow Americans.") is None
    # a lone first reading of 1 s: nothing is settled yet
    assert tracker.partial("b", "like york", seconds=1.0) is None
    assert tracker.partial("b", "What your country can do.", seconds=2.0) == "What your"  # >= 1 s old
    assert tracker.partial("b", "What your country can do for you.", seconds=2.9) == " country can do"
    assert tracker.final("b", "What your country can do for you.") == " for you."
    # words read long ago are sent from the first partial on; the last one never is
    assert tracker.partial("c", "A gold ring will please most any", seconds=4.0) == "A gold ring will please"
    # a revision contradicting sent words sends nothing more; completed carries the text
    assert tracker.partial("c", "A bold ring will please most any girl", seconds=4.5) is None
    assert tracker.final("c", "A bold ring will please most any girl.") is None
