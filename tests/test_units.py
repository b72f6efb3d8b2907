"""Narrow unit tests of the pieces that need no running service."""

from __future__ import annotations

import fakeredis
import numpy as np
import pytest

from audio_service.decoder import SAMPLE_RATE
from audio_service.splitter import split
from shared import codec, models, protocol
from shared.config import Settings, mask_url_password
from shared.heartbeats import WorkerInfo, live_workers, publish_heartbeat
from shared.jobs import TranscriptionJob
from shared.redis_keys import new_reply_channel


def test_settings_from_environment_and_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2T_API_KEY", "sekrit")
    monkeypatch.setenv("S2T_REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("S2T_MAX_CLIENTS", "7")
    settings = Settings()
    assert settings.max_clients == 7
    shown = settings.masked()
    assert shown["api_key"] == "***" and "hunter2" not in str(shown) and "sekrit" not in str(shown)
    assert mask_url_password("redis://u:p@h:1/0") == "redis://u:***@h:1/0"
    assert mask_url_password("redis://h:1/0") == "redis://h:1/0"


def test_msgpack_round_trip_of_a_job_without_pickle() -> None:
    job = TranscriptionJob(utterance_id="u1", reply_channel="c", pcm=b"\x01\x02" * 10, model="tiny.en")
    wire = codec.dumps(job.to_wire())
    assert b"\x80\x04" not in wire[:2]  # not a pickle stream
    assert TranscriptionJob.from_wire(codec.loads(wire)) == job


def test_reply_channels_are_unguessable() -> None:
    channels = {new_reply_channel() for _ in range(100)}
    assert len(channels) == 100 and all(len(c) > 30 for c in channels)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nope", "invalid_json"),
        ("[]", "invalid_message"),
        ('{"command": "x"}', "unknown_command"),
        ("{}", "missing_field"),
        ('{"command": "process_audio"}', "missing_field"),
        ('{"command": "process_audio", "audio_data": "a", "task": "x"}', "invalid_field"),
        ('{"command": "load_model", "model_name": 5}', "invalid_field"),
        ("[" * 100000 + "]" * 100000, "invalid_json"),
    ],
)
def test_protocol_rejects_with_stable_codes(text: str, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_client_message(text)
    assert err.value.code == code


def test_protocol_accepts_original_client_messages() -> None:
    msg = protocol.parse_client_message(
        '{"command": "start_real_recording", "device_id": "abc", "language": "de", "mode": "real_microphone",'
        ' "format": "webm"}'
    )
    assert isinstance(msg, protocol.StartRecording) and msg.language == "de"
    assert isinstance(protocol.parse_client_message('{"command": "ping", "extra": 1}'), protocol.Ping)
    assert protocol.normalize_language("AUTO") is None and protocol.normalize_language("De") == "de"


def test_base64_limits() -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode_base64_audio("A" * 2000, max_bytes=1000)
    assert err.value.code == "audio_too_large"
    assert protocol.decode_base64_audio("AAEC", max_bytes=1000) == b"\x00\x01\x02"


def test_model_registry_offline() -> None:
    assert {"tiny.en", "base"} <= set(models.available_names())
    assert models.lookup("tiny.en").multilingual is False
    assert models.lookup("base").multilingual is True
    assert models.lookup("Systran/faster-whisper-small").source == "hub"
    with pytest.raises(models.UnknownModelError):
        models.lookup("definitely-not-a-model")
    with pytest.raises(models.UnsupportedRequestError) as err:
        models.check_request("tiny.en", False, "de", "transcribe")
    assert err.value.code == "unsupported_language"
    with pytest.raises(models.UnsupportedRequestError):
        models.check_request("tiny.en", False, None, "translate")
    models.check_request("base", True, "de", "translate")


@pytest.mark.slow  # loads the Silero VAD model (in-process, ~0.1 s): models stay out of the fast tier
def test_splitter_no_speech_no_pieces() -> None:
    rng = np.random.default_rng(1)
    assert split(np.zeros(SAMPLE_RATE * 5, dtype=np.float32), 30) == []
    assert split((rng.normal(0, 0.001, SAMPLE_RATE * 40)).astype(np.float32), 30) == []


async def test_heartbeats_show_live_workers_only() -> None:
    server = fakeredis.FakeServer()
    sync = fakeredis.FakeRedis(server=server)
    publish_heartbeat(sync, WorkerInfo(id="w1", host="h", pid=1, models=["tiny.en"]))
    sync.set("s2t:worker:broken", b"\xc1")  # malformed entry must be skipped
    client = fakeredis.FakeAsyncRedis(server=server)
    workers = await live_workers(client)
    assert [w.id for w in workers] == ["w1"] and workers[0].models == ["tiny.en"]
    assert sync.ttl("s2t:worker:w1") > 0


def test_batching_defaults_to_on_for_a_gpu_and_off_for_a_cpu() -> None:
    """Auto batching: on a CPU a batch made live finals wait twice as long (README)."""
    from shared.config import Settings

    assert Settings(batch_size=0).effective_batch_size("cpu") == 1
    assert Settings(batch_size=0).effective_batch_size("cuda") == 8
    assert Settings(batch_size=4).effective_batch_size("cpu") == 4
