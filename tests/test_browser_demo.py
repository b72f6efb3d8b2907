"""The browser demo in a real headless Chromium: its fake microphone plays the jfk
fixture, the page records it through MediaRecorder and ``/ws`` like a person would, and
the settled text it shows must match the reference.

Uses Debian's ``chromium`` (installed here with apt when missing) driven by Playwright;
Playwright's own browser downloads are never used. A screenshot of the page after the
transcription is saved to ``test-artifacts/demo.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import Stack
from tests.helpers import FIXTURES, REPO, ffmpeg_convert, fixture_bytes, manifest, wer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
FAKE_RATE = 48000
# A person starts speaking a moment after pressing Start, which also gives Chrome's audio
# processing (noise suppression, gain control) time to settle. Chrome loops the fake
# capture file: silence after the speech keeps the second pass out of a recording that
# is stopped after SPEAK_S.
LEADING_SILENCE_S = 1.5
TRAILING_SILENCE_S = 6.0
SPEAK_S = 14.0
MAX_WER = 0.15
NO_PLAYWRIGHT = "BROWSER TEST SKIPPED: the playwright package is missing (pip install -e '.[test]')"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt (as root, as CI runs) when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not running as root, so apt-get cannot install it")
    elif shutil.which("apt-get") is None:
        reasons.append("apt-get is not available on this system")
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            if result.returncode != 0:
                reasons.append(f"`{' '.join(command)}` failed: {result.stderr.strip()[-400:]}")
                break
    if CHROMIUM.exists():
        return CHROMIUM
    pytest.skip(
        "BROWSER TEST SKIPPED: no Chromium at /usr/bin/chromium and it could not be installed ("
        + "; ".join(reasons)
        + "). Install Debian's `chromium` package to run the browser demo test."
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * int(FAKE_RATE * seconds))


def write_fake_capture(path: Path, fixture_id: str) -> Path:
    """The fixture as 16-bit PCM 48 kHz mono WAV, the format Chrome's fake capture reads."""
    pcm = ffmpeg_convert(fixture_bytes(fixture_id), "-vn", "-ac", "1", "-ar", str(FAKE_RATE), "-f", "s16le")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FAKE_RATE)
        out.writeframes(silence(LEADING_SILENCE_S) + pcm + silence(TRAILING_SILENCE_S))
    return path


@pytest.fixture(scope="module")
def chromium_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT)
    wav = write_fake_capture(tmp_path_factory.mktemp("fake-mic") / "jfk.wav", "jfk")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        yield launched
        launched.close()


@pytest.fixture
def demo(chromium_browser: Browser, stack: Stack) -> Iterator[Page]:
    """The demo page, connected and ready to record."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{stack.base_url}/demo")
    page.wait_for_selector("#connection[data-state=open]", timeout=15_000)
    page.wait_for_selector("#record:not([disabled])", timeout=15_000)
    yield page
    context.close()


def settled_text(page: Page) -> str:
    return " ".join(page.locator("#transcript .utt.final .text").all_inner_texts())


def wait_until_done(page: Page) -> None:
    """Idle again with settled text: after stop, every final has arrived."""
    page.wait_for_function(
        "document.body.dataset.state === 'idle' && document.querySelector('#transcript .utt.final')",
        timeout=120_000,
    )


def jfk_wer(page: Page) -> float:
    text = settled_text(page)
    measured = wer(manifest()["jfk"]["reference"], text)
    print(f"browser demo WER {measured:.3f}: {text!r}")
    return measured


def test_demo_transcribes_the_microphone(demo: Page) -> None:
    demo.click("#record")
    demo.wait_for_selector("body[data-state=recording]", timeout=15_000)
    started = time.monotonic()
    demo.wait_for_selector("#transcript .utt.partial", timeout=SPEAK_S * 1000)  # grey text while speaking
    demo.wait_for_timeout(max(0.0, SPEAK_S - (time.monotonic() - started)) * 1000)
    demo.click("#record")
    wait_until_done(demo)

    measured = jfk_wer(demo)
    ARTIFACTS.mkdir(exist_ok=True)
    demo.mouse.move(0, 0)  # no hover, and let the button's colour transition finish
    demo.wait_for_timeout(400)
    demo.screenshot(path=str(ARTIFACTS / "demo.png"))
    assert measured <= MAX_WER
    assert demo.locator("#transcript .utt.partial").count() == 0, "every partial must have settled"
    assert demo.locator("#transcript .utt.final .latency").first.inner_text().endswith(("ms", "s"))
    with demo.expect_download() as download:
        demo.click("#download-srt")
    srt = Path(download.value.path()).read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt


def test_demo_sample_and_dropped_file(demo: Page) -> None:
    demo.click("#sample")
    demo.wait_for_selector("body[data-state=recording]", timeout=15_000)
    wait_until_done(demo)  # the sample stops the recording itself when it has played
    assert jfk_wer(demo) <= MAX_WER

    demo.click("#clear")
    demo.set_input_files("#file", str(FIXTURES / manifest()["jfk"]["path"]))
    wait_until_done(demo)
    assert jfk_wer(demo) <= MAX_WER
    assert demo.locator(".take-head").inner_text().lower() == "jfk.flac"


SOCKETS_SPY = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


def test_demo_resumes_a_recording_after_its_connection_drops(chromium_browser: Browser, stack: Stack) -> None:
    """The page's WebSocket is cut mid-recording (close code 4000, not a clean leave): the
    demo reconnects, resumes the same recording, sends what it recorded meanwhile, and the
    settled text is as good as without the cut."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(SOCKETS_SPY)
    page = context.new_page()
    try:
        page.goto(f"{stack.base_url}/demo")
        page.wait_for_selector("#record:not([disabled])", timeout=15_000)
        page.click("#record")
        page.wait_for_selector("body[data-state=recording]", timeout=15_000)
        started = time.monotonic()
        page.wait_for_timeout(LEADING_SILENCE_S * 1000 + 3500)  # into the first sentence
        page.evaluate("window.__sockets.at(-1).close(4000, 'network blip')")
        page.wait_for_function("window.__sockets.length >= 2", timeout=15_000)
        page.wait_for_selector("#connection[data-state=open]", timeout=15_000)
        page.wait_for_function("document.querySelector('#toast').textContent.includes('Reconnected')")
        assert page.evaluate("document.body.dataset.state") == "recording"
        page.wait_for_timeout(max(0.0, SPEAK_S - (time.monotonic() - started)) * 1000)
        page.click("#record")
        wait_until_done(page)
        assert jfk_wer(page) <= MAX_WER
    finally:
        context.close()
