"""``whisper-appliance transcribe`` run as a user runs it: a subprocess against a running
service, writing .srt and .txt files whose text matches the references."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import srt

from tests.conftest import API_KEY, Stack
from tests.helpers import FIXTURES, manifest, wer
from whisper_appliance.embedded_redis import free_port


def _transcribe(*args: str, api_key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "S2T_API_KEY"}
    if api_key is not None:
        env["S2T_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "whisper_appliance.cli", "transcribe", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_writes_srt_and_txt_matching_references(api_stack: Stack, tmp_path: Path) -> None:
    refs = manifest()
    inputs = [FIXTURES / refs[f]["path"] for f in ("jfk", "osr_us_000_0034")]
    done = _transcribe(
        *map(str, inputs),
        "--server",
        api_stack.base_url,
        "--format",
        "srt,txt",
        "--language",
        "en",
        "--output-dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "piece" in done.stderr  # the progress bar
    for fixture_id, limit, length_s in (("jfk", 0.10, 11.0), ("osr_us_000_0034", 0.15, 35.6)):
        stem = Path(refs[fixture_id]["path"]).stem
        text = (tmp_path / f"{stem}.txt").read_text()
        assert wer(refs[fixture_id]["reference"], text) <= limit, text
        cues = list(srt.parse((tmp_path / f"{stem}.srt").read_text(), ignore_errors=False))
        assert wer(refs[fixture_id]["reference"], " ".join(c.content for c in cues)) <= limit
        assert all(0 <= c.start.total_seconds() < c.end.total_seconds() <= length_s for c in cues)


@pytest.mark.slow
def test_wrong_key_is_reported_per_file(api_stack: Stack, tmp_path: Path) -> None:
    done = _transcribe(
        str(FIXTURES / "jfk.flac"),
        "--server",
        api_stack.base_url,
        "--output-dir",
        str(tmp_path),
        api_key="wrong",
    )
    assert done.returncode == 1 and "API key" in done.stderr
    assert not list(tmp_path.iterdir())


def test_no_server_says_how_to_start_one(tmp_path: Path) -> None:
    done = _transcribe(str(FIXTURES / "jfk.flac"), "--server", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "whisper-appliance up" in lines[0] and "./scripts/up.sh" in lines[0]
