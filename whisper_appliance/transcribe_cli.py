"""``whisper-appliance transcribe FILE…``: send files to a running service and write
transcripts or subtitles beside them (or into ``--output-dir``).

It speaks the service's OpenAI-compatible API with ``stream=true``: the first event says
how many pieces the file was split into and every later one brings a finished piece, so
the progress bar moves as the workers finish pieces, not as bytes upload. Outputs are
rendered here with the same :mod:`shared.subtitles` code the server uses. With
``--diarize`` the server labels the speakers once the whole file is done and streams the
labelled segments (``transcript.text.segment``) before its done event; the outputs are
rendered from those (``A: `` in SRT, ``<v A>`` in VTT, ``speaker`` in json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from shared import subtitles

DEFAULT_SERVER = "http://localhost:8000"
#: --format -> (response format rendered, file extension)
FORMATS = {
    "txt": ("text", ".txt"),
    "srt": ("srt", ".srt"),
    "vtt": ("vtt", ".vtt"),
    "json": ("verbose_json", ".json"),
}
HOW_TO_START = "start one with ./scripts/up.sh or `whisper-appliance up`"


class TranscribeError(Exception):
    """The server refused or failed one file; the message is the server's own sentence."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files with a running service")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio or video files")
    p.add_argument("--server", default=DEFAULT_SERVER, help="service URL (default %(default)s)")
    p.add_argument(
        "--format",
        type=_formats,
        default=["txt"],
        metavar="txt|srt|vtt|json",
        help="output format; several comma-separated (srt,txt) from one pass (default txt)",
    )
    p.add_argument("--language", help="ISO code such as en or de (default: detect)")
    p.add_argument("--model", default="whisper-1", help="model name (default: the server's default)")
    p.add_argument("--output-dir", type=Path, help="write outputs here instead of beside each input")
    p.add_argument(
        "--diarize", action="store_true", help="label the speakers (A, B, ... in order of first appearance)"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("S2T_API_KEY"),
        help="key when the server sets S2T_API_KEY (default: $S2T_API_KEY)",
    )


def _formats(value: str) -> list[str]:
    chosen = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)} (comma-separated), not {value!r}")
    return chosen


def run(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(900.0, connect=5.0)
    with httpx.Client(base_url=args.server.rstrip("/"), headers=headers, timeout=timeout) as client:
        try:
            client.get("/health", timeout=5.0)
        except httpx.TransportError:
            print(f"No whisper-appliance server answers at {args.server}; {HOW_TO_START}.", file=sys.stderr)
            return 2
        failures = 0
        for path in args.files:
            try:
                written = transcribe_file(client, path, args)
            except (TranscribeError, OSError, httpx.HTTPError) as exc:
                failures += 1
                print(f"{path}: {exc}", file=sys.stderr)
                continue
            print(f"{path} -> {', '.join(str(w) for w in written)}", file=sys.stderr)
    return 1 if failures else 0


def output_path(path: Path, fmt: str, output_dir: Path | None) -> Path:
    return (output_dir or path.parent) / (path.stem + FORMATS[fmt][1])


def transcribe_file(client: httpx.Client, path: Path, args: argparse.Namespace) -> list[Path]:
    """Transcribe once, write every requested format; return the files written."""
    audio = path.read_bytes()
    pieces, duration_s = stream_pieces(
        client, path.name, audio, model=args.model, language=args.language, diarize=args.diarize
    )
    written = []
    for fmt in args.format:
        body = subtitles.render(FORMATS[fmt][0], pieces, duration_s=duration_s, task="transcribe")
        target = output_path(path, fmt, args.output_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(body, ensure_ascii=False, indent=2) + "\n" if isinstance(body, dict) else body
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def stream_pieces(
    client: httpx.Client,
    name: str,
    audio: bytes,
    *,
    model: str,
    language: str | None,
    diarize: bool = False,
) -> tuple[list[dict[str, Any]], float]:
    """Post one file with ``stream=true``; return its pieces (transcript messages with
    absolute segment times) and its duration, showing a bar of completed pieces. With
    ``diarize``: one piece holding the labelled segments the server sent last."""
    form = {"model": model, "stream": "true", **({"language": language} if language else {})}
    if diarize:
        form["response_format"] = "diarized_json"
    pieces: list[dict[str, Any]] = []
    labelled: list[dict[str, Any]] = []
    duration_s = 0.0
    with (
        client.stream(
            "POST", "/v1/audio/transcriptions", files={"file": (name, audio)}, data=form
        ) as response,
        tqdm(desc=name, unit="piece", leave=True, file=sys.stderr) as bar,
    ):
        if response.status_code != 200:
            response.read()
            raise TranscribeError(_error_message(response))
        for event in sse_events(response.iter_lines()):
            if "error" in event:
                raise TranscribeError(str(event["error"].get("message") or event["error"]))
            progress = event.get("x_progress") or {}
            if progress:
                duration_s = float(progress.get("duration_s") or duration_s)
                bar.total = int(progress.get("pieces") or 0) or None
                bar.n = int(progress.get("completed") or 0)
                bar.refresh()
            if piece := event.get("x_piece"):
                pieces.append({"transcript": str(event.get("delta", "")).strip(), **piece})
            if event.get("type") == "transcript.text.segment":
                labelled.append(event)
            if event.get("type") == "transcript.text.done":
                if diarize:
                    text = str(event.get("text") or "")
                    whole = {"transcript": text, "start": 0.0, "end": duration_s, "segments": labelled}
                    return [whole], duration_s
                return pieces, duration_s
    raise TranscribeError("The server closed the stream before the transcript was done")


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of a Server-Sent Events stream."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
    if data:
        yield json.loads("\n".join(data))


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"
