"""What shared/queue.py relies on in RQ, checked against the RQ installed (fast: fakeredis).

pyproject pins RQ to one minor version; before that pin moves, this file must pass on the
new version. Each test names one thing the queue module takes for granted: the key names
it reads and writes itself (gather's LPOP, persist and delete), the fields of a job
record, the serializer and job_class hooks, the uncompressed payload, the worker's
overrides and the exceptions it re-exports.
"""

from __future__ import annotations

import inspect
import signal
from typing import Any

import fakeredis
import pytest
import rq
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.serializers import resolve_serializer
from rq.timeouts import JobTimeoutException

from shared import codec, queue
from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.jobs import TRANSCRIBE_FUNC, TranscriptionJob
from shared.redis_keys import QUEUE_FINAL, QUEUE_PARTIAL, QUEUES

SETTINGS = Settings()


def _job(utterance_id: str, **fields: Any) -> TranscriptionJob:
    return TranscriptionJob(utterance_id, "s2t:reply:x", b"\x01\x02" * 8, "tiny.en", **fields)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_key_names_are_rqs() -> None:
    assert Queue.redis_queue_namespace_prefix == "rq:queue:"
    assert Job.redis_job_namespace_prefix == "rq:job:"
    assert queue.queue_key(QUEUE_FINAL) == Queue(QUEUE_FINAL, connection=fakeredis.FakeRedis()).key
    assert queue.job_key("abc") == Job.key_for("abc")
    assert queue.JOB_KEY_PATTERN == "rq:job:*"


def test_enqueue_writes_the_list_and_record_the_queue_module_reads(client: fakeredis.FakeRedis) -> None:
    jobs = queue.JobQueue(SETTINGS, connection=client)
    jobs.enqueue([_job("f1"), _job("p1", kind="partial", stream_id="s", seq=1)])
    jobs.enqueue([_job("f0")], at_front=True)
    assert client.lrange(f"rq:queue:{QUEUE_FINAL}", 0, -1) == [b"f0", b"f1"]
    assert client.lrange(f"rq:queue:{QUEUE_PARTIAL}", 0, -1) == [b"p1-p1"]
    record = client.hgetall("rq:job:f1")
    assert record[b"origin"] == QUEUE_FINAL.encode()
    assert record[b"description"] == b"transcribe f1"  # not the repr of the audio
    assert int(record[b"timeout"]) == SETTINGS.job_timeout_s
    assert 0 < client.ttl("rq:job:f1") <= SETTINGS.job_ttl_s  # a job nobody takes expires
    # msgpack, uncompressed: the payload's PCM is in the record byte for byte; no pickle.
    func, _instance, args, _kwargs = codec.loads(record[b"data"])
    assert func == TRANSCRIBE_FUNC and args[0]["pcm"] == b"\x01\x02" * 8
    assert b"\x01\x02" * 8 in record[b"data"]


def test_stock_job_fetch_reads_the_uncompressed_record(client: fakeredis.FakeRedis) -> None:
    queue.JobQueue(SETTINGS, connection=client).enqueue([_job("f1")])
    fetched = Job.fetch("f1", connection=client, serializer=MsgpackSerializer)
    assert fetched.func_name == TRANSCRIBE_FUNC
    assert TranscriptionJob.from_wire(fetched.args[0]).utterance_id == "f1"
    assert fetched.origin == QUEUE_FINAL and fetched.id == "f1"
    with pytest.raises(NoSuchJobError):
        Job.fetch("gone", connection=client, serializer=MsgpackSerializer)


def test_serializer_and_job_class_hooks() -> None:
    assert resolve_serializer(MsgpackSerializer) is MsgpackSerializer
    q = Queue(
        "x", connection=fakeredis.FakeRedis(), serializer=MsgpackSerializer, job_class=queue.UncompressedJob
    )
    assert q.job_class is queue.UncompressedJob and q.serializer is MsgpackSerializer
    # UncompressedJob swaps the private payload around Job.to_dict.
    params = inspect.signature(Job.to_dict).parameters
    assert list(params) == ["self", "include_meta", "include_result"]
    job = queue.UncompressedJob.create(
        TRANSCRIBE_FUNC, args=({"a": 1},), connection=fakeredis.FakeRedis(), serializer=MsgpackSerializer
    )
    assert "_data" in vars(job)  # the private attribute RQ compresses in to_dict
    data = job.data
    assert job.to_dict()["data"] == data and job.data == data


def test_enqueue_call_takes_every_option_the_queue_module_passes() -> None:
    params = inspect.signature(Queue.enqueue_call).parameters
    for name in ("args", "timeout", "ttl", "result_ttl", "failure_ttl", "job_id", "at_front", "description"):
        assert name in params, name


def test_worker_surface_the_subclass_uses() -> None:
    assert list(inspect.signature(SimpleWorker.request_stop).parameters) == ["self", "signum", "frame"]
    assert list(inspect.signature(SimpleWorker.register_death).parameters) == ["self"]
    work = inspect.signature(SimpleWorker.work).parameters
    assert "with_scheduler" in work and "logging_level" in work and "burst" in work
    init = inspect.signature(SimpleWorker.__init__).parameters
    for name in ("serializer", "name", "log_job_description", "connection"):
        assert name in init, name
    assert issubclass(queue._Worker, SimpleWorker)


def test_stop_request_is_remembered_and_rq_raises_stop_requested_when_idle() -> None:
    worker = queue._Worker(
        list(QUEUES), connection=fakeredis.FakeRedis(), serializer=MsgpackSerializer, name="w"
    )
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(StopRequested):  # what _rejoin suppresses
            worker.request_stop(signal.SIGTERM, None)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert worker.stopping


def test_timeout_exception_is_rqs() -> None:
    assert queue.JobTimeout is JobTimeoutException
    assert inspect.signature(rq.get_current_job).parameters["connection"].default is None


#: What the job below saw, for the test that runs it in a real (burst) worker.
_SEEN: dict[str, Any] = {}


def seen_by_job(payload: dict[str, Any]) -> None:
    """A job function: what the queue module reads while RQ runs a job."""
    taken = queue.started(TranscriptionJob.from_wire(payload))
    client = _SEEN["client"]
    _SEEN.setdefault("order", []).append(taken.job.utterance_id)
    _SEEN.setdefault("taken", []).append((taken.rq_id, taken.queue, taken.gathered))
    _SEEN.setdefault("ttl", []).append(client.ttl(queue.job_key(taken.rq_id or "")))


def test_worker_runs_finals_first_and_keeps_nothing(client: fakeredis.FakeRedis) -> None:
    """The worker class runs jobs in process, finals before partials, with the record
    persistent while it runs (the reaper reads it) and deleted after (``result_ttl=0``)."""
    _SEEN.clear()
    _SEEN["client"] = client
    queues = {
        name: Queue(name, connection=client, serializer=MsgpackSerializer, job_class=queue.UncompressedJob)
        for name in QUEUES
    }
    func = f"{__name__}.seen_by_job"
    for job in (_job("p1", kind="partial", seq=1), _job("f1")):
        name = QUEUE_PARTIAL if job.kind == "partial" else QUEUE_FINAL
        queues[name].enqueue_call(func, args=(job.to_wire(),), ttl=600, result_ttl=0, job_id=job.job_id)
    worker = queue._Worker(list(QUEUES), connection=client, serializer=MsgpackSerializer, name="w1")
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    assert _SEEN["order"] == ["f1", "p1"]
    assert _SEEN["taken"] == [("f1", QUEUE_FINAL, False), ("p1-p1", QUEUE_PARTIAL, False)]
    assert _SEEN["ttl"] == [-1, -1]
    assert not list(client.scan_iter(match=queue.JOB_KEY_PATTERN))
