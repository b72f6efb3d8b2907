"""Fast tests of a diarized file's assembly (no model, no services): the speaker data's
wire form, one labelling over pieces embedded apart, labelled segments in every format,
and the speaker data never reaching a client."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import srt
import webvtt

from gateway import events
from gateway.files import FileJobs, _Held
from gateway.pending import PendingRequest
from gateway.speaker_labels import SpeakerHints, file_turns, label_pieces
from gateway.worker_reply import WorkerReply
from shared import codec, subtitles
from shared.jobs import TranscriptionJob, client_view
from shared.speakers import wire
from shared.speakers.turns import Windows

DIM = 32


def _voices(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((2, DIM))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _piece_windows(centres: np.ndarray, who: list[int], t0: float, rng: np.random.Generator) -> Windows:
    """One window a second from ``t0``, voice ``who[k]`` (noisy copies of the centres)."""
    emb = np.stack([centres[w] + 0.2 * rng.standard_normal(DIM) / np.sqrt(DIM) for w in who])
    starts = t0 + np.arange(len(who), dtype=float)
    return Windows(starts, starts + 1.0, emb.astype(np.float32))


def _over_the_wire(data: dict) -> dict:
    return codec.loads(codec.dumps(data))


def test_wire_round_trip_and_malformed_data_refused() -> None:
    rng = np.random.default_rng(1)
    win = _piece_windows(_voices(), [0, 1, 0], 2.0, rng)
    refs = _voices()[:1]
    raw = _over_the_wire(wire.dump_piece(win, refs, 0.5))
    back = wire.load_windows(raw)
    assert np.allclose(back.starts, win.starts) and np.allclose(back.embeddings, win.embeddings, atol=1e-6)
    loaded = wire.load_references(raw)
    assert loaded is not None and np.allclose(loaded, refs, atol=1e-6)
    assert wire.load_references(_over_the_wire(wire.dump_piece(win, None, 0.1))) is None
    for bad in (
        {**raw, "starts": raw["starts"][:2]},
        {**raw, "embeddings": {**raw["embeddings"], "data": raw["embeddings"]["data"][:-4]}},
        {**raw, "embeddings": {"rows": "3", "dim": DIM, "data": b""}},
        "not a map",
    ):
        with pytest.raises(ValueError):
            wire.load_windows(bad)


def test_pieces_embedded_apart_get_one_labelling_and_known_names() -> None:
    """Voice 1 speaks first in piece 0 and voice 0 first in piece 1: labels follow the
    whole file (A = the file's first voice) in both pieces, not each piece's own order."""
    centres, rng = _voices(), np.random.default_rng(2)
    p0 = wire.dump_piece(_piece_windows(centres, [1, 1, 1, 0, 0, 0], 0.0, rng), centres[:1], 0.2)
    p1 = wire.dump_piece(_piece_windows(centres, [0, 0, 0, 1, 1, 1], 6.0, rng), None, 0.2)
    turns = file_turns([_over_the_wire(p0), None, _over_the_wire(p1)], SpeakerHints([]))
    assert [t[2] for t in turns] == ["A", "B", "A"]
    assert turns[0][:2] == (0.0, 3.0) and turns[1][:2] == (3.0, 9.0)
    named = file_turns([p0, p1], SpeakerHints(["agent"]))
    assert [t[2] for t in named] == ["A", "agent", "A"]
    with pytest.raises(ValueError, match="known speaker"):
        file_turns([p1], SpeakerHints(["agent"]))  # the clips' piece did not answer with them


PIECES = [
    {
        "transcript": "Hello there. Hi.",
        "start": 0.0,
        "end": 5.0,
        "segments": [
            {"start": 0.2, "end": 2.9, "text": "Hello there."},
            {"start": 3.1, "end": 5.0, "text": "Hi."},
        ],
    },
    {
        "transcript": "Bye.",
        "start": 6.0,
        "end": 8.0,
        "segments": [{"start": 6.0, "end": 8.0, "text": "Bye."}],
    },
]
TURNS = [(0.0, 3.0, "A"), (3.0, 5.5, "agent"), (5.5, 9.0, "A")]


def test_labelled_segments_in_verbose_json_srt_and_vtt() -> None:
    labelled = label_pieces(PIECES, TURNS)
    assert [p["speaker"] for p in labelled] == ["A", "A"]  # piece 0: A holds most of it
    body = subtitles.render("verbose_json", labelled, duration_s=8.0, task="transcribe")
    assert [s["speaker"] for s in body["segments"]] == ["A", "agent", "A"]
    cues = list(srt.parse(subtitles.srt(labelled), ignore_errors=False))
    assert [c.content for c in cues] == ["A: Hello there.", "agent: Hi.", "A: Bye."]
    captions = webvtt.from_string(subtitles.vtt(labelled), strict=True).captions
    assert [(c.voice, c.text) for c in captions] == [("A", "Hello there."), ("agent", "Hi."), ("A", "Bye.")]
    assert "speaker" not in subtitles.render("verbose_json", PIECES, duration_s=8.0, task="x")["segments"][0]


def test_speaker_data_reaches_the_assembler_but_no_client() -> None:
    data = wire.dump_piece(_piece_windows(_voices(), [0], 0.0, np.random.default_rng(3)), None, 0.1)
    job = TranscriptionJob(utterance_id="f", reply_channel="c", pcm=b"", model="m", request_id="f", count=1)
    raw = codec.loads(
        codec.dumps({"type": "transcript", "transcript": "Hi.", wire.REPLY_FIELD: data, **job.routing("w")})
    )
    assert wire.REPLY_FIELD not in client_view(raw)
    reply = WorkerReply.parse(raw)
    assert wire.REPLY_FIELD not in reply.message and reply.speakers == data
    pending = PendingRequest(internal_id="f", client_request_id=None, deadline=0.0)
    pending.queued(["f"], 1.0)
    done = [e for e in pending.add(reply) if isinstance(e, events.PieceDone)]
    assert done[0].speakers == data and wire.REPLY_FIELD not in done[0].message


def test_diarize_fields_travel_with_the_job() -> None:
    job = TranscriptionJob(utterance_id="u", reply_channel="c", pcm=b"\0\0", model="m", diarize=True)
    job.speaker_references = [b"\1\0"]
    again = TranscriptionJob.from_wire(codec.loads(codec.dumps(job.to_wire())))
    assert again.diarize and again.speaker_references == [b"\1\0"]


def test_a_segment_across_a_change_of_voice_and_a_pause_is_cut_into_speech() -> None:
    """Whisper's one segment over A, a 1 s pause, A again and then B becomes A's speech
    (pause left out) and B's, each with its own words; short gaps of one voice are closed."""
    words = [
        {"word": "ask", "start": 0.0, "end": 0.9},
        {"word": "not", "start": 0.9, "end": 2.6},  # DTW stretches words over the pause: nearest turn
        {"word": "what", "start": 2.6, "end": 3.4},
        {"word": "fine.", "start": 3.4, "end": 5.0},
    ]
    seg = {"start": 0.0, "end": 5.0, "text": " ask not what fine.", "words": words, "avg_logprob": -0.2}
    turns = [(0.1, 1.0, "A"), (1.2, 1.4, "A"), (2.5, 3.4, "A"), (3.6, 5.0, "B")]
    parts = label_pieces([{"transcript": "x", "start": 0.0, "end": 5.0, "segments": [seg]}], turns)[0]
    got = [(p["start"], p["end"], p["speaker"], p["text"]) for p in parts["segments"]]
    assert got == [(0.1, 1.4, "A", "ask not"), (2.5, 3.4, "A", "what"), (3.6, 5.0, "B", "fine.")]
    assert all(p["avg_logprob"] == -0.2 for p in parts["segments"])
    one_voice = label_pieces([{"segments": [seg]}], [(0.0, 5.0, "A")])[0]["segments"]
    assert one_voice == [{**seg, "speaker": "A"}]


def test_file_jobs_hold_a_diarized_files_pieces_and_release_them_labelled() -> None:
    """Pieces answered out of order by two workers: nothing reaches the client until both
    are in, then both come labelled in file order (one labelling), then the done event."""
    centres, rng = _voices(), np.random.default_rng(5)
    seen: list[events.FileEvent] = []

    def reply(index: int, who: list[int], t0: float) -> dict:
        seg = {"start": t0, "end": t0 + len(who), "text": f"piece {index}"}
        data = wire.dump_piece(_piece_windows(centres, who, t0, rng), None, 0.1)
        job = TranscriptionJob(utterance_id=f"f-{index}", reply_channel="c", pcm=b"", model="m")
        job.request_id, job.index, job.count = "f", index, 2
        message = {"type": "transcript", "transcript": f"piece {index}", "segments": [seg], "final": True}
        message.update(start=t0, end=t0 + len(who))
        return codec.loads(codec.dumps({**message, wire.REPLY_FIELD: data, **job.routing("w")}))

    async def run() -> None:
        files = FileJobs(None, "c", seen.append)  # type: ignore[arg-type]  # no ctx needed here
        pending = PendingRequest(internal_id="f", client_request_id="r1", deadline=0.0)
        files.pending["f"] = pending
        files._held["f"] = _Held(SpeakerHints([]))
        files._emit_all(pending, pending.queued(["f-0", "f-1"], 8.0))
        assert files.on_reply(reply(1, [1, 1, 1, 1], 4.0))  # the second piece first: voice 1
        assert not any(isinstance(e, events.PieceDone) for e in seen)
        assert files.on_reply(reply(0, [0, 0, 0, 0], 0.0))
        await asyncio.gather(*files._tasks)

    asyncio.run(run())
    done = [e for e in seen if isinstance(e, events.PieceDone)]
    assert [(e.index, e.message["speaker"]) for e in done] == [(0, "A"), (1, "B")]
    assert [s["speaker"] for e in done for s in e.message["segments"]] == ["A", "B"]
    assert isinstance(seen[-1], events.FileDone) and wire.REPLY_FIELD not in done[0].message
