"""The model registry and language list, offline: what /api/models, /v1/models and
/api/languages are built from, checked against the backends' and the bundled
tokenizer's own data so the literal list cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import languages, models
from shared.config import get_settings


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_language_list_matches_faster_whisper_and_the_bundled_tokenizer() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(languages.CODES) == set(_LANGUAGE_CODES) and len(languages.CODES) == 100
    tokenizer = json.loads((Path(models.materialize("base")) / "tokenizer.json").read_text("utf-8"))
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    for index, code in enumerate(languages.CODES[: languages.CLASSIC_COUNT]):
        assert ids[f"<|{code}|>"] == 50259 + index, code


def test_language_list_matches_openai_whisper() -> None:
    tokenizer = pytest.importorskip("whisper.tokenizer", reason="openai-whisper extra not installed")
    assert list(tokenizer.LANGUAGES.items()) == list(languages.LANGUAGES)


def test_bundled_models_metadata() -> None:
    tiny, base = models.lookup("tiny.en"), models.lookup("base")
    assert (tiny.source, tiny.multilingual, tiny.languages, tiny.backend) == (
        "bundled",
        False,
        ("en",),
        "faster-whisper",
    )
    assert base.multilingual and len(base.languages) == 99 and "de" in base.languages
    assert "yue" not in base.languages  # Cantonese came with large-v3, not in base's vocabulary
    assert 60 <= (tiny.size_mb or 0) <= 90 and 120 <= (base.size_mb or 0) <= 170
    entry = base.as_dict()
    assert entry["english_only"] is False and entry["backends"] == ["faster-whisper", "openai-whisper"]
    assert entry["weights"] == "ctranslate2" and entry["languages"][:3] == ["en", "zh", "de"]
    assert base.as_openai() == {
        "id": "base",
        "object": "model",
        "created": 0,
        "owned_by": "whisper-appliance/bundled",
    }
    listing = models.openai_list()
    assert listing["object"] == "list" and {"id": "tiny.en"}.items() <= listing["data"][0].items()
    hub = models.lookup("large-v3")
    assert (
        hub.source == "hub" and len(hub.languages) == 100 and models.lookup("small.en").languages == ("en",)
    )


def test_backend_suffix_and_default_backend(fresh_settings: pytest.MonkeyPatch) -> None:
    assert models.split_backend("base@openai-whisper") == ("base", "openai-whisper")
    assert models.split_backend("owner/model@v2") == ("owner/model@v2", None)
    spec = models.lookup("base@openai-whisper")
    assert (spec.name, spec.base_name, spec.backend) == ("base@openai-whisper", "base", "openai-whisper")
    assert models.materialize("base@openai-whisper") == models.materialize("base")
    fresh_settings.setenv("S2T_BACKEND", "openai-whisper")
    get_settings.cache_clear()
    assert models.lookup("tiny.en").backend == "openai-whisper"
    assert models.lookup("tiny.en@faster-whisper").backend == "faster-whisper"
    with pytest.raises(models.UnknownModelError):
        models.lookup("tiny.en@no-such-backend")


@pytest.mark.parametrize(
    ("model", "language", "task", "code"),
    [
        ("tiny.en", "de", "transcribe", "unsupported_language"),
        ("tiny.en", None, "translate", "unsupported_task"),
        ("base", "xx", "transcribe", "unsupported_language"),
        ("base", "yue", "transcribe", "unsupported_language"),
        ("base", "de", "translate", None),
        ("base", None, "transcribe", None),
        ("tiny.en", "en", "transcribe", None),
    ],
)
def test_check_request(model: str, language: str | None, task: str, code: str | None) -> None:
    spec = models.lookup(model)
    if code is None:
        models.check_request(model, spec.multilingual, language, task, spec.languages)
        return
    with pytest.raises(models.UnsupportedRequestError) as err:
        models.check_request(model, spec.multilingual, language, task, spec.languages)
    assert err.value.code == code
