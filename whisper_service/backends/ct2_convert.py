"""Build an openai-whisper model from CTranslate2 Whisper weights (``model.bin``).

No ``.pt`` checkpoint can be downloaded on an offline machine, but the bundled models
(``tiny.en``, ``base``) ship as CTranslate2 folders. The weights are the same network, so
this module reads CTranslate2's binary format itself (no ctranslate2 import: the point
is a second, independent backend), dequantizes int8/int16 weights, maps the
``WhisperSpec`` variable names onto openai-whisper's ``state_dict`` names, and splits
the fused attention projections (self-attention Q|K|V, cross-attention K|V).

``model.bin`` layout (binary version 4 to 6, little-endian; see CTranslate2's
``ModelSpec._serialize``)::

    u32 version, str spec_name, u32 revision, u32 n_variables,
    n_variables * (str name, u8 rank, rank * u32 dim, u8 dtype_id, u32 n_bytes, bytes),
    u32 n_aliases, n_aliases * (str alias, str target)

where ``str`` is a u16 length (including a trailing NUL) followed by UTF-8 bytes.
A quantized variable ``X`` comes with ``X_scale``; the float value is ``X / X_scale``
(one scale per output row for int8, one scalar for int16).
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from whisper.model import ModelDimensions, Whisper

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
#: CTranslate2's DataType enum order (include/ctranslate2/types.h).
_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class Ct2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this reader understands."""


@dataclass
class Ct2Checkpoint:
    """Everything in a CTranslate2 model folder that the conversion needs."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable as float32, dequantized when it was stored as int8/int16 with a scale."""
        try:
            value = self.variables[name]
        except KeyError:
            raise Ct2FormatError(f"model.bin has no variable '{name}'") from None
        scale = self.variables.get(f"{name}_scale")
        if scale is None:
            return value.astype(np.float32)
        scale = scale.astype(np.float32)
        if scale.ndim == 1 and value.ndim > 1:  # per output row
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        return (value.astype(np.float32) / scale).astype(np.float32)

    def scalar(self, name: str) -> int:
        return int(self.variables[name].reshape(()))


class _Reader:
    def __init__(self, buffer: memoryview) -> None:
        self.buf = buffer
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise Ct2FormatError("model.bin ends early")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.take("H")
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def array(self, dtype: str, shape: tuple[int, ...], n_bytes: int) -> np.ndarray:
        if self.pos + n_bytes > len(self.buf):
            raise Ct2FormatError("model.bin ends early")
        raw = self.buf[self.pos : self.pos + n_bytes]
        self.pos += n_bytes
        if dtype == "bfloat16":  # numpy has no bfloat16: widen to float32 by the top 16 bits
            wide = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return wide.view(np.float32).reshape(shape)
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).copy()
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise Ct2FormatError(f"variable of shape {shape} has {array.size} values")
        return array.reshape(shape)


def read_model_bin(path: Path) -> tuple[str, int, int, dict[str, np.ndarray]]:
    """Parse ``model.bin``: spec name, revision, binary version, variables (aliases resolved)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        reader = _Reader(memoryview(mapped))
        try:
            version = reader.take("I")
            if version not in SUPPORTED_BINARY_VERSIONS:
                raise Ct2FormatError(
                    f"CTranslate2 binary version {version} is not supported "
                    f"(supported: {', '.join(map(str, SUPPORTED_BINARY_VERSIONS))})"
                )
            spec, revision = reader.string(), reader.take("I")
            variables: dict[str, np.ndarray] = {}
            for _ in range(reader.take("I")):
                name = reader.string()
                shape = tuple(reader.take("I") for _ in range(reader.take("B")))
                type_id = reader.take("B")
                if type_id >= len(_DTYPES):
                    raise Ct2FormatError(f"variable '{name}' has unknown dtype id {type_id}")
                variables[name] = reader.array(_DTYPES[type_id], shape, reader.take("I"))
            for _ in range(reader.take("I")):
                alias, target = reader.string(), reader.string()
                variables[alias] = variables[target]
        finally:
            del reader  # release the memoryview before the mmap closes
    return spec, revision, version, variables


def read_checkpoint(folder: str | Path) -> Ct2Checkpoint:
    folder = Path(folder)
    spec, revision, version, variables = read_model_bin(folder / "model.bin")
    if spec != "WhisperSpec":
        raise Ct2FormatError(f"{folder} holds a {spec}, not a Whisper model")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text("utf-8")) if config_file.is_file() else {}
    return Ct2Checkpoint(spec, revision, version, variables, config)


def _count_layers(ckpt: Ct2Checkpoint, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    found = {int(m.group(1)) for name in ckpt.variables if (m := pattern.match(name))}
    if found != set(range(len(found))) or not found:
        raise Ct2FormatError(f"{prefix} layers are missing or not numbered 0..n-1: {sorted(found)}")
    return len(found)


def dimensions(ckpt: Ct2Checkpoint) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` fields, read off the shapes."""
    conv1 = ckpt.variables["encoder/conv1/weight"]
    audio_pos = ckpt.variables["encoder/position_encodings/encodings"]
    embeddings = ckpt.variables["decoder/embeddings/weight"]
    text_pos = ckpt.variables["decoder/position_encodings/encodings"]
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(audio_pos.shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": ckpt.scalar("encoder/num_heads"),
        "n_audio_layer": _count_layers(ckpt, "encoder"),
        "n_vocab": int(embeddings.shape[0]),
        "n_text_ctx": int(text_pos.shape[0]),
        "n_text_state": int(embeddings.shape[1]),
        "n_text_head": ckpt.scalar("decoder/num_heads"),
        "n_text_layer": _count_layers(ckpt, "decoder"),
    }


def _linear(ckpt: Ct2Checkpoint, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = ckpt.get(f"{src}/weight")
    out[f"{dst}.bias"] = ckpt.get(f"{src}/bias")


def _norm(ckpt: Ct2Checkpoint, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = ckpt.get(f"{src}/gamma")
    out[f"{dst}.bias"] = ckpt.get(f"{src}/beta")


def _split_projection(
    ckpt: Ct2Checkpoint, src: str, dst: str, heads: tuple[str, ...], out: dict[str, np.ndarray]
) -> None:
    """A fused projection (rows stacked Q|K|V or K|V) into openai-whisper's separate
    linears; ``key`` has no bias there (CTranslate2 stores zeros for it)."""
    weights = np.split(ckpt.get(f"{src}/weight"), len(heads), axis=0)
    biases = np.split(ckpt.get(f"{src}/bias"), len(heads), axis=0)
    for head, weight, bias in zip(heads, weights, biases, strict=True):
        out[f"{dst}.{head}.weight"] = weight
        if head != "key":
            out[f"{dst}.{head}.bias"] = bias


def _block(ckpt: Ct2Checkpoint, src: str, dst: str, out: dict[str, np.ndarray], *, cross: bool) -> None:
    _split_projection(ckpt, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"), out)
    _linear(ckpt, f"{src}/self_attention/linear_1", f"{dst}.attn.out", out)
    _norm(ckpt, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    if cross:
        _linear(ckpt, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", out)
        _split_projection(ckpt, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"), out)
        _linear(ckpt, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", out)
        _norm(ckpt, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
    _linear(ckpt, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(ckpt, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)
    _norm(ckpt, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)


def whisper_state_dict(ckpt: Ct2Checkpoint) -> dict[str, np.ndarray]:
    """openai-whisper ``Whisper.state_dict()`` names to float32 arrays."""
    dims = dimensions(ckpt)
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(ckpt, f"encoder/{conv}", f"encoder.{conv}", out)
    out["encoder.positional_embedding"] = ckpt.get("encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        _block(ckpt, f"encoder/layer_{i}", f"encoder.blocks.{i}", out, cross=False)
    _norm(ckpt, "encoder/layer_norm", "encoder.ln_post", out)
    out["decoder.token_embedding.weight"] = ckpt.get("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = ckpt.get("decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        _block(ckpt, f"decoder/layer_{i}", f"decoder.blocks.{i}", out, cross=True)
    _norm(ckpt, "decoder/layer_norm", "decoder.ln", out)
    projection = ckpt.variables.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, ckpt.variables["decoder/embeddings/weight"]):
        raise Ct2FormatError(
            "output projection is not tied to the token embedding (openai-whisper ties them)"
        )
    return out


def model_dimensions(ckpt: Ct2Checkpoint) -> ModelDimensions:
    from whisper.model import ModelDimensions

    return ModelDimensions(**dimensions(ckpt))


def load_whisper_from_ct2(folder: str | Path, device: str = "cpu") -> Whisper:
    """An ``openai-whisper`` model with the weights of a CTranslate2 Whisper folder."""
    import torch
    from whisper.model import Whisper

    ckpt = read_checkpoint(folder)
    model = Whisper(model_dimensions(ckpt))
    state = {name: torch.from_numpy(value) for name, value in whisper_state_dict(ckpt).items()}
    model.load_state_dict(state, strict=True)
    heads = ckpt.config.get("alignment_heads")
    if heads:  # the word-timestamp heads CTranslate2 keeps in config.json
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device).eval()


def export_checkpoint(folder: str | Path, target: str | Path) -> Path:
    """Write an openai-whisper ``.pt`` (``{"dims", "model_state_dict"}``, float16, the
    layout ``whisper.load_model`` reads) for users who want a checkpoint file."""
    import dataclasses

    import torch

    ckpt = read_checkpoint(folder)
    state = {name: torch.from_numpy(value).half() for name, value in whisper_state_dict(ckpt).items()}
    target = Path(target)
    torch.save({"dims": dataclasses.asdict(model_dimensions(ckpt)), "model_state_dict": state}, target)
    return target


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Convert a CTranslate2 Whisper folder (or a registry "
        "model name) into an openai-whisper .pt checkpoint."
    )
    parser.add_argument("model", help="CTranslate2 folder or model name, e.g. tiny.en")
    parser.add_argument("output", help="the .pt file to write")
    args = parser.parse_args(argv)
    from shared.models import materialize

    folder = args.model if (Path(args.model) / "model.bin").is_file() else materialize(args.model)
    print(export_checkpoint(folder, args.output))


if __name__ == "__main__":
    main()
