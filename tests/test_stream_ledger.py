"""A live stream's ledger on fakeredis: which queued jobs workers still want, whatever order
the audio service, the workers and the reaper write it in."""

from __future__ import annotations

import fakeredis
import pytest

from shared.config import Settings
from shared.jobs import JobKind, TranscriptionJob
from shared.redis_keys import stream_key
from shared.stream_ledger import StreamLedger

TTL_S = 90


def _job(kind: JobKind, seq: int, stream_id: str | None = "s") -> TranscriptionJob:
    return TranscriptionJob("s-u0", "s2t:reply:x", b"", "tiny.en", kind=kind, stream_id=stream_id, seq=seq)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def ledger(client: fakeredis.FakeRedis) -> StreamLedger:
    return StreamLedger(client, TTL_S)


def test_ttl_follows_the_jobs_lifetime(client: fakeredis.FakeRedis) -> None:
    settings = Settings(job_ttl_s=100, job_timeout_s=20)
    StreamLedger.for_settings(client, settings).supersede("s", 1)
    assert 100 < client.ttl(stream_key("s")) <= 120


def test_a_fresh_stream_wants_everything(ledger: StreamLedger) -> None:
    assert ledger.partials_done("s") == 0 and not ledger.is_cancelled("s")
    assert not any(ledger.is_superseded(_job(kind, 1)) for kind in ("partial", "candidate", "final"))


def test_newer_job_supersedes_older_partials_only(ledger: StreamLedger) -> None:
    ledger.supersede("s", 2)
    ledger.supersede("s", 5)
    assert ledger.is_superseded(_job("partial", 2))
    assert not ledger.is_superseded(_job("partial", 5))
    assert not ledger.is_superseded(_job("final", 2))  # finals always run
    assert not ledger.is_superseded(_job("candidate", 2))  # candidates are revoked by name
    assert not ledger.is_superseded(_job("partial", 2, stream_id=None))  # a file's piece


def test_candidates_finish_in_any_order(ledger: StreamLedger) -> None:
    ledger.supersede("s", 3)  # candidate 3 queued
    ledger.supersede("s", 5, revoke=3)  # speech resumed; candidate 5 queued, in one write
    ledger.supersede("s", 8, revoke=5)
    assert ledger.is_superseded(_job("candidate", 5))
    assert ledger.is_superseded(_job("candidate", 3))
    assert not ledger.is_superseded(_job("candidate", 8))


def test_candidate_revoked_after_its_job_was_taken(ledger: StreamLedger) -> None:
    candidate = _job("candidate", 4)
    ledger.supersede("s", 4)
    assert not ledger.is_superseded(candidate)  # the worker checked and started it
    ledger.revoke_candidate("s", 4)
    ledger.mark_partial_done(candidate)  # answered: not a partial, the pacing is untouched
    assert ledger.partials_done("s") == 0
    assert ledger.is_superseded(candidate)  # a retry of it would be skipped


def test_cancelled_stream_skips_every_waiting_job(ledger: StreamLedger) -> None:
    ledger.supersede("s", 6)
    ledger.cancel("s")
    assert ledger.is_cancelled("s")
    assert all(ledger.is_superseded(_job(kind, 7)) for kind in ("partial", "candidate", "final"))
    ledger.supersede("t", 1)
    assert not ledger.is_superseded(_job("final", 1, stream_id="t"))  # other streams go on


def test_partials_done_paces_the_next_partial(ledger: StreamLedger) -> None:
    ledger.mark_partial_done(_job("partial", 3))
    assert ledger.partials_done("s") == 3
    ledger.mark_partial_done(_job("final", 9))  # only partials pace partials
    ledger.mark_partial_done(_job("partial", 9, stream_id=None))
    assert ledger.partials_done("s") == 3


def test_partial_lost_by_a_dead_worker_is_marked_done_by_the_reaper(
    client: fakeredis.FakeRedis, ledger: StreamLedger
) -> None:
    ledger.supersede("s", 7)
    routing = TranscriptionJob.from_wire({**_job("partial", 7).to_wire(), "pcm": b""})  # as the reaper has it
    ledger.mark_partial_done(routing)
    assert ledger.partials_done("s") == 7
    assert 0 < client.ttl(stream_key("s")) <= TTL_S


def test_every_write_keeps_an_expiry(client: fakeredis.FakeRedis, ledger: StreamLedger) -> None:
    writes = [
        lambda: ledger.supersede("s", 1),
        lambda: ledger.supersede("s", 2, revoke=1),
        lambda: ledger.revoke_candidate("s", 2),
        lambda: ledger.mark_partial_done(_job("partial", 2)),
        lambda: ledger.cancel("s"),
    ]
    for write in writes:
        client.delete(stream_key("s"))  # expired meanwhile: the write recreates it
        write()
        assert 0 < client.ttl(stream_key("s")) <= TTL_S
        client.persist(stream_key("s"))
        write()
        assert 0 < client.ttl(stream_key("s")) <= TTL_S
