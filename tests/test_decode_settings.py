"""The decode settings bench/decode_settings.py chose reach the model: which jobs decode
without timestamp tokens or without the temperature fallback, and the hint that tells."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from audio_service.app import _decode_hints
from gateway.openai_api import AudioRequest
from shared import codec
from shared.config import Settings
from shared.jobs import TranscriptionJob
from whisper_service.backends import Segment, Word
from whisper_service.backends.faster_whisper_backend import _after, _temperature
from whisper_service.jobs import decode_options


def _job(**fields: Any) -> TranscriptionJob:
    return TranscriptionJob(utterance_id="u", reply_channel="c", pcm=b"\0\0", model="tiny.en", **fields)


def _request(response_format: str, *, words: bool = False, stream: bool = False) -> AudioRequest:
    return AudioRequest(
        audio=b"",
        model="tiny.en",
        task="transcribe",
        endpoint_task="transcribe",
        language=None,
        prompt=None,
        response_format=response_format,
        temperature=None,
        words=words,
        stream=stream,
    )


@pytest.mark.parametrize(
    ("response_format", "words", "stream", "timestamps"),
    [
        ("json", False, False, False),
        ("text", False, False, False),
        ("srt", False, False, True),
        ("vtt", False, False, True),
        ("verbose_json", False, False, True),
        ("json", True, False, True),
        ("json", False, True, True),  # the stream's pieces carry their segments
    ],
)
def test_only_replies_that_show_segment_times_ask_for_them(
    response_format: str, words: bool, stream: bool, timestamps: bool
) -> None:
    hints = _request(response_format, words=words, stream=stream).hints()
    assert hints["timestamps"] is timestamps
    assert _decode_hints(hints)["timestamps"] is timestamps
    again = TranscriptionJob.from_wire(codec.loads(codec.dumps(_job(**_decode_hints(hints)).to_wire())))
    assert again.timestamps is timestamps


def test_a_diarized_stream_decodes_as_the_same_request_unstreamed() -> None:
    """Its text shows once labelled, from the labelled segments: no per-piece segment times."""
    from gateway.renderers.diarized import SpeakerRequest

    speakers = SpeakerRequest([], [], None, None)
    request = dataclasses.replace(_request("diarized_json", stream=True), speakers=speakers)
    assert request.hints()["timestamps"] is False
    assert dataclasses.replace(request, response_format="verbose_json").hints()["timestamps"] is True


def test_files_decode_timestamp_tokens_only_when_needed() -> None:
    settings = Settings()
    assert decode_options(settings, _job(timestamps=False)).without_timestamps
    assert not decode_options(settings, _job(timestamps=True)).without_timestamps
    assert not decode_options(settings, _job()).without_timestamps  # not said: as before
    assert not decode_options(settings, _job(timestamps=False, word_timestamps=True)).without_timestamps
    always = Settings(file_timestamps="always")
    assert not decode_options(always, _job(timestamps=False)).without_timestamps
    assert decode_options(settings, _job(stream_id="s", kind="final")).without_timestamps  # live


def test_temperature_fallback_and_beams_per_kind() -> None:
    settings = Settings(
        temperature_fallback=True, partial_temperature_fallback=False, condition_on_previous_text=True
    )
    final, partial = _job(), _job(stream_id="s", kind="partial")
    assert decode_options(settings, final).temperature_fallback
    assert not decode_options(settings, partial).temperature_fallback
    assert decode_options(settings, partial).beam_size == settings.partial_beam_size
    assert decode_options(settings, final).condition_on_previous_text
    assert not decode_options(settings, _job(stream_id="s", kind="final")).condition_on_previous_text


def test_temperature_without_fallback_is_one_decode() -> None:
    assert _temperature(None) == {} and _temperature(0.0) == {}  # faster-whisper's schedule
    assert _temperature(0.4) == {"temperature": 0.4}
    assert _temperature(None, fallback=False) == {"temperature": 0.0}
    assert _temperature(0.4, fallback=False) == {"temperature": 0.4}


def test_left_context_words_are_heard_but_not_returned() -> None:
    words = [Word(0.2, 0.6, " ask"), Word(0.6, 1.1, " not"), Word(2.9, 3.3, " what"), Word(3.3, 3.8, " your")]
    segments = [
        Segment(0.0, 1.1, "ask not", words=words[:2]),
        Segment(2.8, 3.8, "what your", words=words[2:]),
    ]
    kept = _after(segments, 3.0, keep_words=False)
    assert [(s.start, s.text, s.words) for s in kept] == [(2.9, "what your", None)]
    assert _after(segments, 0.0, keep_words=True) == [
        Segment(0.2, 1.1, "ask not", words=words[:2]),
        Segment(2.9, 3.8, "what your", words=words[2:]),
    ]


def test_a_piece_longer_than_one_window_keeps_its_timestamps() -> None:
    long_pcm = b"\0\0" * 16000 * 31
    job = TranscriptionJob(
        utterance_id="u", reply_channel="c", pcm=long_pcm, model="tiny.en", timestamps=False
    )
    assert not decode_options(Settings(), job).without_timestamps


def test_diarized_file_pieces_align_words_after_a_plain_decode() -> None:
    """Speaker labels leave a file's decode as it is unlabelled; its words come from the
    backend's aligner. Live finals are labelled whole (no words), a client's own word
    timings keep the word-timed decode, and a backend without an aligner decodes with them."""
    from whisper_service.jobs import _aligns_words

    class Aligner:
        def align_words(self) -> None: ...

    class Plain:
        pass

    diarized = _job(diarize=True, timestamps=False)
    assert _aligns_words(Aligner(), diarized)  # type: ignore[arg-type]
    assert decode_options(Settings(), diarized).without_timestamps  # as json unlabelled
    assert not decode_options(Settings(), diarized).word_timestamps
    assert not _aligns_words(Plain(), diarized)  # type: ignore[arg-type]
    assert not _aligns_words(Aligner(), _job(diarize=True, word_timestamps=True))  # type: ignore[arg-type]
    live = _job(diarize=True, stream_id="s", kind="final")
    assert not _aligns_words(Aligner(), live)  # type: ignore[arg-type]
    assert not _aligns_words(Aligner(), _job())  # type: ignore[arg-type]
