"""The openai-whisper backend on weights converted from the bundled CTranslate2 models.

Needs the ``[openai]`` extra (torch + openai-whisper; ``scripts/test.sh`` installs it).
Without it every test here is skipped with the reason in pytest's ``-ra`` summary.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="SKIPPED openai-whisper backend tests: torch is not installed "
    "(pip install torch==2.13.0, then pip install -e '.[openai]'; scripts/test.sh does this)",
)
pytest.importorskip(
    "whisper",
    reason="SKIPPED openai-whisper backend tests: openai-whisper is not installed "
    "(pip install -e '.[openai]' after torch; scripts/test.sh does this)",
)

from shared import models  # noqa: E402
from shared.config import get_settings  # noqa: E402
from tests.helpers import fixture_audio, manifest, wer  # noqa: E402
from whisper_service.backends import DecodeOptions, Transcriber, load_transcriber  # noqa: E402
from whisper_service.backends import faster_whisper_backend as fw  # noqa: E402
from whisper_service.backends.ct2_convert import (  # noqa: E402
    dimensions,
    export_checkpoint,
    read_checkpoint,
    whisper_state_dict,
)
from whisper_service.backends.openai_whisper_backend import OpenAIWhisperTranscriber  # noqa: E402

#: Every test here loads or converts a Whisper model: the slow tier.
pytestmark = pytest.mark.slow

JFK = manifest()["jfk"]["reference"]
ENGLISH = DecodeOptions(language="en", beam_size=5)


def _load(name: str) -> Transcriber:
    return load_transcriber(name, device="cpu", compute_type="default", cpu_threads=2)


@pytest.fixture(scope="module")
def jfk_audio() -> np.ndarray:
    return fixture_audio("jfk")


@pytest.fixture(scope="module")
def faster_jfk_text(jfk_audio: np.ndarray) -> str:
    return _load("tiny.en@faster-whisper").transcribe(jfk_audio, ENGLISH).text


def test_converter_reads_shapes_and_splits_fused_attention() -> None:
    ckpt = read_checkpoint(models.materialize("tiny.en"))
    assert ckpt.spec == "WhisperSpec" and ckpt.binary_version == 6
    assert dimensions(ckpt) == {  # Whisper tiny.en as published by OpenAI
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
    }
    state = whisper_state_dict(ckpt)
    fused = ckpt.get("decoder/layer_2/self_attention/linear_0/weight")
    assert fused.shape == (3 * 384, 384)
    assert np.array_equal(state["decoder.blocks.2.attn.value.weight"], fused[768:])
    cross_kv = ckpt.get("decoder/layer_2/attention/linear_1/weight")
    assert np.array_equal(state["decoder.blocks.2.cross_attn.key.weight"], cross_kv[:384])
    # openai-whisper's key projection has no bias: CTranslate2 must have stored zeros there.
    assert not np.any(ckpt.get("encoder/layer_1/self_attention/linear_0/bias")[384:768])
    assert "encoder.blocks.1.attn.key.bias" not in state
    model = OpenAIWhisperTranscriber("tiny.en", device="cpu", cpu_threads=2).model
    assert set(model.state_dict()) == set(state)


def test_openai_backend_on_converted_tiny_en_matches_faster_whisper(
    jfk_audio: np.ndarray, faster_jfk_text: str
) -> None:
    transcriber = _load("tiny.en@openai-whisper")
    assert transcriber.backend == "openai-whisper" and transcriber.languages == ("en",)
    text = transcriber.transcribe(jfk_audio, ENGLISH).text
    assert wer(JFK, text) <= 0.10, text
    assert wer(faster_jfk_text, text) <= 0.05, (faster_jfk_text, text)


def test_openai_backend_detects_and_translates_on_converted_base() -> None:
    transcriber = _load("base@openai-whisper")
    assert len(transcriber.languages) == 99 and "de" in transcriber.languages
    item = manifest()["thorsten_gt_03"]
    audio = fixture_audio(item["id"])
    detected = transcriber.transcribe(audio, DecodeOptions())
    assert detected.language == "de" and (detected.language_probability or 0) > 0.5
    assert wer(item["reference"], detected.text) <= 0.25, detected.text
    english = transcriber.transcribe(audio, DecodeOptions(language="de", task="translate")).text
    assert wer(item["reference"], english) > 0.6 and re.search(r"\b(and|the|is|as|also)\b", english.lower())


def test_falls_back_to_openai_whisper_when_faster_whisper_cannot_load(
    monkeypatch: pytest.MonkeyPatch, jfk_audio: np.ndarray
) -> None:
    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated: CTranslate2 cannot load this model on this machine")

    monkeypatch.setattr(fw.FasterWhisperTranscriber, "__init__", broken)
    transcriber = _load("tiny.en")
    assert transcriber.backend == "openai-whisper"
    assert wer(JFK, transcriber.transcribe(jfk_audio, ENGLISH).text) <= 0.10


def test_pt_checkpoint_loads_through_whisper_load_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jfk_audio: np.ndarray
) -> None:
    """A user's own ``.pt`` under S2T_MODELS_DIR is served by openai-whisper, unconverted."""
    export_checkpoint(models.materialize("tiny.en"), tmp_path / "my-tiny.en.pt")
    monkeypatch.setenv("S2T_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        spec = models.lookup("my-tiny.en")
        assert (spec.source, spec.weights, spec.backend, spec.multilingual) == (
            "local",
            "openai-pt",
            "openai-whisper",
            False,
        )
        assert "my-tiny.en" in models.available_names()
        with pytest.raises(models.UnknownModelError):
            models.lookup("my-tiny.en@faster-whisper")
        transcriber = _load("my-tiny.en")
        assert isinstance(transcriber, OpenAIWhisperTranscriber)
        assert transcriber.weights == str(tmp_path / "my-tiny.en.pt")
        assert wer(JFK, transcriber.transcribe(jfk_audio, ENGLISH).text) <= 0.10
    finally:
        get_settings.cache_clear()


def _int8_copy(source: str, target: Path) -> None:
    """Re-save tiny.en with int8 weights by CTranslate2's own writer, so the reader is
    checked against the real quantized format, not against itself."""
    from ctranslate2.specs import whisper_spec

    ckpt = read_checkpoint(source)
    dims = dimensions(ckpt)
    spec = whisper_spec.WhisperSpec(
        dims["n_audio_layer"], dims["n_audio_head"], dims["n_text_layer"], dims["n_text_head"]
    )
    for name, value in ckpt.variables.items():
        node: object = spec
        *scopes, attr = name.split("/")
        for part in scopes:
            prefix, _, index = part.rpartition("_")
            node = getattr(node, part) if hasattr(node, part) else getattr(node, prefix)[int(index)]
        setattr(node, attr, value if value.ndim else value.dtype.type(value[()]))
    spec.register_vocabulary([f"t{i}" for i in range(dims["n_vocab"])])
    spec.validate()
    spec.optimize(quantization="int8")
    spec.save(str(target))


def test_int8_weights_are_dequantized(tmp_path: Path, jfk_audio: np.ndarray) -> None:
    pytest.importorskip("ctranslate2")
    source = models.materialize("tiny.en")
    _int8_copy(source, tmp_path)
    original, quantized = read_checkpoint(source), read_checkpoint(tmp_path)
    conv = "encoder/conv2/weight"  # 3-D: one scale per output channel
    assert quantized.variables[conv].dtype == np.int8 and f"{conv}_scale" in quantized.variables
    for name in (conv, "decoder/layer_1/self_attention/linear_0/weight"):
        exact, approx = original.get(name), quantized.get(name)
        row_max = np.abs(exact).reshape(len(exact), -1).max(axis=1)
        error = np.abs(exact - approx).reshape(len(exact), -1).max(axis=1)
        assert np.all(error <= row_max / 127 * 0.51 + 1e-6)
    text = _load(str(tmp_path) + "@openai-whisper").transcribe(jfk_audio, ENGLISH).text
    assert wer(JFK, text) <= 0.10, text
