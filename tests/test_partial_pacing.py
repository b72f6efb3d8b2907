"""The partial pacer's state machine, the ledger figures it reads, and how a pause reaches
a ``/ws`` client: in-process, nothing started."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import fakeredis
import numpy as np
import pytest

from audio_service import streams
from audio_service.pacer import Load, PacerOptions, PartialPacer
from audio_service.segmenter import Utterance
from gateway import events
from gateway.renderers.browser import BrowserRenderer
from shared import stream_protocol as sp
from shared.config import Settings
from shared.jobs import JobKind, TranscriptionJob
from shared.stream_ledger import StreamLedger
from whisper_service.jobs import decode_options

OPTIONS = PacerOptions(interval_s=1.0, max_interval_s=4.0, busy_wait_s=0.5, pause_wait_s=2.0, resume_s=3.0)
CALM = Load(0, 0, 0.1)
BUSY = Load(0, 3, 0.8)  # a partial waited past the busy bound


def test_calm_pool_keeps_the_cadence_and_the_first_partial_always_goes() -> None:
    pacer = PartialPacer(OPTIONS)
    for t in range(5):
        assert pacer.observe(CALM, float(t)) is None
    assert pacer.interval_s == 1.0 and not pacer.paused
    assert pacer.due(None) and pacer.due(1.0) and pacer.due(0.98)  # VAD windows: a hair short
    assert not pacer.due(0.5)


def test_partials_thin_then_pause_then_resume_thinned_and_narrow_back() -> None:
    pacer = PartialPacer(OPTIONS)
    assert pacer.observe(BUSY, 0.0) is None and pacer.interval_s == 2.0
    assert not pacer.due(1.0) and pacer.due(2.0)
    assert pacer.observe(Load(1, 0, None), 1.0) is None and pacer.interval_s == 4.0  # a final waits
    assert pacer.due(None)  # the first partial of an utterance still goes while thinned
    assert pacer.observe(BUSY, 2.0) == "paused"  # busy at the widest interval
    assert not pacer.due(None) and not pacer.due(10.0)
    # paused: only the pool's queues count; waiting work restarts the calm period
    assert pacer.observe(Load(0, 0, None), 4.0) is None
    assert pacer.observe(Load(1, 0, None), 4.5) is None
    assert pacer.observe(Load(0, 0, None), 7.0) is None  # 2.5 s since work was seen waiting
    assert pacer.observe(Load(0, 0, None), 7.6) == "resumed"
    assert pacer.interval_s == 4.0 and pacer.due(4.0) and not pacer.due(2.0)
    assert pacer.observe(CALM, 8.0) is None and pacer.interval_s == 2.0
    assert pacer.observe(Load(0, 0, None), 9.0) is None and pacer.interval_s == 2.0  # no new wait
    assert pacer.observe(CALM, 10.0) is None and pacer.interval_s == 1.0
    assert pacer.observe(CALM, 11.0) is None and pacer.interval_s == 1.0


def test_a_long_partial_wait_pauses_at_once() -> None:
    pacer = PartialPacer(OPTIONS)
    assert pacer.observe(Load(0, 0, 2.5), 0.0) == "paused"
    assert pacer.observe(Load(0, 0, 2.5), 1.0) is None  # a paused pacer is not paused again


def test_a_zero_pause_bound_pauses_on_any_wait_but_not_without_one() -> None:
    pacer = PartialPacer(PacerOptions(pause_wait_s=0.0, resume_s=1.0))
    assert pacer.observe(Load(0, 0, None), 0.0) is None  # nothing answered yet
    assert pacer.observe(Load(0, 0, 0.0), 0.5) == "paused"
    assert pacer.observe(Load(0, 0, None), 1.6) == "resumed"


def _job(kind: JobKind, seq: int) -> TranscriptionJob:
    return TranscriptionJob("s-u0", "s2t:reply:x", b"", "tiny.en", kind=kind, stream_id="s", seq=seq)


def test_ledger_progress_carries_the_partials_wait_and_the_candidates_end() -> None:
    ledger = StreamLedger(fakeredis.FakeRedis(), 90)
    assert ledger.progress("s") == ledger.progress("s", None)
    fresh = ledger.progress("s", 4)
    assert (fresh.partials_done, fresh.partial_wait_s, fresh.candidate_done) == (0, None, False)
    ledger.mark_partial_done(_job("partial", 3), 0.4567)
    ledger.mark_partial_done(_job("candidate", 4), 9.0)  # candidates pace nothing with their wait
    ledger.mark_partial_done(_job("final", 5), 9.0)
    progress = ledger.progress("s", 4)
    assert (progress.partials_done, progress.partial_wait_s, progress.candidate_done) == (3, 0.457, True)
    assert not ledger.progress("s", 6).candidate_done  # another candidate, not answered
    ledger.mark_partial_done(_job("partial", 6))  # the reaper: lost, no wait known
    assert (ledger.progress("s").partials_done, ledger.progress("s").partial_wait_s) == (6, None)


@pytest.mark.parametrize(
    ("event", "message", "partials"),
    [
        (events.PartialsPaused(), "partials_paused", False),
        (events.PartialsResumed(), "partials_resumed", True),
    ],
)
def test_ws_is_told_when_partials_pause_and_resume(event: events.Event, message: str, partials: bool) -> None:
    [status] = BrowserRenderer(model="tiny.en").render(event)
    assert status == {"type": "status", "message": message, "partials": partials, "model": "tiny.en"}


def test_the_audio_services_notices_parse() -> None:
    assert isinstance(sp.parse_event(sp.PartialsPaused().to_json()), sp.PartialsPaused)
    assert sp.parse_event('{"type": "partials_resumed"}') == sp.PartialsResumed()


def test_partials_get_a_short_encoder_window_and_finals_keep_30_s() -> None:
    def job(kind: JobKind, seconds: float) -> TranscriptionJob:
        pcm = b"\0\0" * int(seconds * 16000)
        return TranscriptionJob("s-u0", "c", pcm, "tiny.en", kind=kind, stream_id="s", seq=1)

    settings = Settings(partial_window_s=15)
    assert Settings().partial_window_s == 15
    assert decode_options(settings, job("partial", 0.8)).encoder_window_s == 15
    assert decode_options(settings, job("partial", 13.1)).encoder_window_s == 16
    assert decode_options(settings, job("partial", 29.0)).encoder_window_s == 30
    assert decode_options(settings, job("candidate", 0.8)).encoder_window_s == 0  # a final's text
    assert decode_options(settings, job("final", 0.8)).encoder_window_s == 0
    assert decode_options(Settings(partial_window_s=0), job("partial", 0.8)).encoder_window_s == 0


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


def _utterance(index: int, seconds: float) -> Utterance:
    audio = np.zeros(int(seconds * 16000), np.int16)
    return Utterance(index, audio, 10.0 * index, 10.0 * index + seconds, "partial")


def test_the_stream_holds_partials_for_the_last_one_its_candidate_and_the_pacer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """:meth:`LiveStream._partial_wanted` on fakeredis (no VAD model, no socket)."""
    monkeypatch.setattr(streams, "Segmenter", lambda options: SimpleNamespace(options=options))
    client = fakeredis.FakeRedis()
    ledger = StreamLedger(client, 90)
    socket = _Socket()
    queue = SimpleNamespace(redis=client, redis_away=False)
    config = sp.StreamConfig(stream_id="s", reply_channel="c")
    stream = streams.LiveStream(socket, queue, ledger, Settings(), config)  # type: ignore[arg-type]

    def wanted(utterance: Utterance) -> bool:
        return asyncio.run(stream._partial_wanted(utterance))

    def sent(seq: int, utterance: Utterance) -> None:  # what _dispatch_one notes for a partial queued
        stream._last_partial = (seq, time.monotonic())
        stream._partial_sent = (utterance.index, utterance.end_s - utterance.start_s)

    first = _utterance(0, 0.8)
    assert wanted(first)
    sent(1, first)
    assert not wanted(_utterance(0, 1.8))  # partial 1 not done yet
    assert wanted(_utterance(1, 0.8))  # ...but it does not hold back the next utterance's first words
    ledger.mark_partial_done(_job("partial", 1), 0.1)
    stream._candidate, stream._candidate_at = (1, 2), time.monotonic()
    assert not wanted(_utterance(1, 1.8))  # the candidate of utterance 1 is in flight
    assert wanted(_utterance(2, 0.8))  # not another utterance's
    ledger.mark_partial_done(_job("candidate", 2))
    assert wanted(_utterance(1, 1.8))
    sent(3, _utterance(1, 1.8))
    ledger.mark_partial_done(_job("partial", 3), 2.5)  # waited past S2T_PARTIAL_PAUSE_WAIT_S
    assert not wanted(_utterance(1, 2.8))
    assert socket.sent == [{"type": "partials_paused"}]
    assert not wanted(_utterance(3, 0.8))  # paused: not even a first partial
