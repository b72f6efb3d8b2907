"""Speaker-embedding models behind one small interface.

The bundled default is Resemblyzer's VoiceEncoder (Apache-2.0): its weights ship inside the
PyPI wheel, so it works offline. Only the weights file is read (the package's own import
pulls webrtcvad and librosa, which this service does not need): the 3-layer LSTM is rebuilt
here and the 40-band mel front end is computed in numpy the way librosa does.
Stronger models load by name (``pyannote/...``, ``wespeaker...``) through pyannote.audio
when that is installed and the weights are reachable; otherwise a clear error says so.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000


class SpeakerEncoder(Protocol):
    """Maps 16 kHz mono float32 audio to one L2-normalised voice embedding."""

    name: str
    dim: int

    def embed(self, audio: np.ndarray) -> np.ndarray: ...

    def embed_many(self, windows: list[np.ndarray]) -> np.ndarray: ...


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa's default, htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = 400, n_mels: int = 40) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) with Slaney area normalisation."""
    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sr / 2.0)), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


_MEL = mel_filterbank()
_WINDOW = np.hanning(401)[:-1].astype(np.float32)  # periodic Hann, as scipy's get_window


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram: 25 ms windows, 10 ms hop, centred, zero-padded."""
    n_fft, hop = 400, 160
    padded = np.pad(audio.astype(np.float32), n_fft // 2)
    n = 1 + (len(padded) - n_fft) // hop
    if n <= 0:
        return np.zeros((0, 40), dtype=np.float32)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(padded[idx] * _WINDOW, axis=1)) ** 2
    return (spec @ _MEL.T).astype(np.float32)


def _normalize_volume(audio: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Raise quiet audio to -30 dBFS (never lower it), as Resemblyzer's preprocessing does."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if len(audio) else 0.0
    if rms <= 1e-8:
        return audio
    change = target_dbfs - 20 * np.log10(rms)
    return audio * (10 ** (change / 20)) if change > 0 else audio


class ResemblyzerEncoder:
    """Resemblyzer's VoiceEncoder from the weights bundled in its wheel (256-d, CPU)."""

    name = "resemblyzer"
    dim = 256
    partial_frames = 160  # 1.6 s per partial, Resemblyzer's hparams
    partial_step = 80

    def __init__(self, weights: Path | None = None) -> None:
        import torch
        from torch import nn

        path = weights or _bundled_weights()
        self._torch = torch
        self._lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self._linear = nn.Linear(256, 256)
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self._lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        self._lstm.eval()
        self._linear.eval()

    def _partials(self, audio: np.ndarray) -> list[np.ndarray]:
        mels = mel_frames(_normalize_volume(audio))
        if len(mels) <= self.partial_frames:
            reps = int(np.ceil(self.partial_frames / max(len(mels), 1)))
            return [np.tile(mels, (reps, 1))[: self.partial_frames]] if len(mels) else []
        starts = range(0, len(mels) - self.partial_frames + 1, self.partial_step)
        return [mels[s : s + self.partial_frames] for s in starts]

    def embed_many(self, windows: list[np.ndarray]) -> np.ndarray:
        """One embedding per window, partials of all windows in one batch (why: speed)."""
        parts: list[np.ndarray] = []
        owner: list[int] = []
        for i, w in enumerate(windows):
            ps = self._partials(w)
            if not ps:
                raise ValueError("audio too short to embed")
            parts.extend(ps)
            owner.extend([i] * len(ps))
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(parts))
            _, (hidden, _) = self._lstm(x)
            raw = torch.relu(self._linear(hidden[-1]))
            raw = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)
        emb = raw.numpy()
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        np.add.at(out, np.array(owner), emb)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        return self.embed_many([audio])[0]


class PyannoteEncoder:
    """A named pyannote.audio / WeSpeaker embedding model (needs pyannote.audio + weights)."""

    dim = 0

    def __init__(self, name: str) -> None:
        try:
            from pyannote.audio import Inference, Model  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise RuntimeError(
                f"speaker model {name!r} needs pyannote.audio (pip install pyannote.audio)"
            ) from exc
        self.name = name
        self._inference = Inference(Model.from_pretrained(name), window="whole")

    def embed(self, audio: np.ndarray) -> np.ndarray:  # pragma: no cover - needs weights
        import torch

        v = np.asarray(
            self._inference({"waveform": torch.from_numpy(audio[None, :]), "sample_rate": SAMPLE_RATE})
        )
        v = v.reshape(-1).astype(np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-8)

    def embed_many(self, windows: list[np.ndarray]) -> np.ndarray:  # pragma: no cover
        return np.stack([self.embed(w) for w in windows])


def _bundled_weights() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "speaker model 'resemblyzer' needs the resemblyzer wheel (pip install resemblyzer --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


_CACHE: dict[str, SpeakerEncoder] = {}


def load_encoder(name: str = "resemblyzer") -> SpeakerEncoder:
    """The encoder a deployment named (cached per process; loading takes ~1 s)."""
    if name not in _CACHE:
        enc: SpeakerEncoder = ResemblyzerEncoder() if name == "resemblyzer" else PyannoteEncoder(name)
        _CACHE[name] = enc
    return _CACHE[name]


def _ffmpeg() -> str:
    """ffmpeg on PATH, else imageio-ffmpeg's bundled binary (the audio service's rule)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def decode_audio(data: bytes) -> np.ndarray:
    """Any container ffmpeg reads -> 16 kHz mono float32; ValueError if it is not audio."""
    proc = subprocess.run(
        [
            _ffmpeg(),
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise ValueError("not decodable audio")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()
