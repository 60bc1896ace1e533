"""The latent library: shared networks, named per-shape codes, each shape's own detail grid.

One ``.csdf`` file = safetensors tensors + JSON metadata (see ``library_meta``), written
atomically (temporary file, fsync, rename). Shape ``i`` owns code row ``i`` and detail grid ``i``,
stored compactly by ``field.codec.DetailCodec`` (a compressed node mask and quantised, compressed
features), so removing a shape drops everything it stored. A file of an older readable format
loads as it was written and saves in the current one (``upgrade`` does just that). Loading never
executes code, checks every declared size against bounds and against the file's tensors before
allocating anything, and validates every tensor.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic_io import atomic_write
from ..config import PER_SHAPE_FRAME as PER_SHAPE
from ..config import SHARED_FRAME as SHARED
from ..config import ModelConfig, Preset, SampleConfig, TrainConfig
from ..errors import LibraryError
from .library_meta import (FORMAT_NAME, FORMAT_VERSION, METADATA_KEY, OLDEST_READABLE_VERSION, read_header,
                           read_library_meta, shape_frame)
from ..geometry.meshes import Normalization
from ..field.model import CompactSdf
from ..field.codec import DetailCodec

#: The shared networks' weights are stored as float16 from library format 4 on (float32 before):
#: half the shared bytes, and a rounding far below what the band's own 8-bit distances carry. A
#: library rounds its networks when it is made, so one fresh from training equals its file.
NETWORKS_IN_HALF_FROM = 4

#: safetensors dtype codes as people know them, for messages.
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
                "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@dataclass
class ShapeEntry:
    """One shape of a library: its name, normalisation, what was measured at encode time, and its
    ``frame`` (``geometry.frames``): ``shared`` (its transform is the library's shared frame) or
    ``per-shape`` (its own bounding box; what files written before frames were recorded hold)."""

    name: str
    transform: Normalization
    source_sha256: str = ""
    stats: dict = field(default_factory=dict)
    frame: str = PER_SHAPE

    def to_dict(self, code_size: int) -> dict:
        return {"name": self.name, "code_size": code_size, "transform": self.transform.to_dict(),
                "source_sha256": self.source_sha256, "stats": self.stats, "frame": self.frame}


class Library:
    """Shared model + codes (N, D) + one ShapeEntry (and one detail grid) per code row. Making one
    rounds the model's network weights to float16, as a file stores them."""

    def __init__(self, preset: Preset, model: CompactSdf, codes: torch.Tensor, shapes: list[ShapeEntry],
                 history: list[dict] | None = None) -> None:
        if len(codes) != len(shapes):
            raise LibraryError(f"{len(codes)} codes but {len(shapes)} shape entries")
        if model.detail is not None and len(model.detail.grid.keys) != len(shapes):
            raise LibraryError(f"{len(model.detail.grid.keys)} detail grids but {len(shapes)} shape entries")
        names = [s.name for s in shapes]
        if len(set(names)) != len(names):
            raise LibraryError("duplicate shape names in library")
        with torch.no_grad():
            for weights in _network_tensors(model).values():
                weights.copy_(weights.half())
        self.preset = preset
        self.model = model
        self.codes = codes
        self.shapes = shapes
        self.history = history or []

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.shapes]

    def index(self, name: str) -> int:
        """Row of ``name``; LibraryError naming the available shapes if absent."""
        for i, shape in enumerate(self.shapes):
            if shape.name == name:
                return i
        raise LibraryError(f"no shape named {name!r} in the library (has: {', '.join(self.names) or 'none'})")

    def shared_frame(self) -> Normalization | None:
        """The transform of the library's shared-frame shapes (None when it has none)."""
        return next((s.transform for s in self.shapes if s.frame == SHARED), None)

    def shape_info(self, name: str) -> dict:
        """Metadata of one shape (code size, transform, source hash, encode-time stats)."""
        return self.shapes[self.index(name)].to_dict(self.preset.model.code_size)

    def code_bytes(self) -> int:
        """Bytes of one shape's code as stored."""
        return self.codes.shape[1] * 4

    def shared_bytes(self) -> int:
        """Bytes of the shared networks as stored (float16)."""
        return sum(t.numel() * 2 for t in _network_tensors(self.model).values())

    def copy(self) -> Library:
        """A deep copy (training a copy leaves this library untouched)."""
        return Library(self.preset, copy.deepcopy(self.model), self.codes.detach().clone(),
                       copy.deepcopy(self.shapes), copy.deepcopy(self.history))

    def metadata(self, detail_bytes: list[int] | None = None) -> dict:
        """The JSON metadata stored in the file (``detail_bytes``: each shape's stored detail)."""
        grid = self.model.detail.grid if self.model.detail is not None else None
        shapes = []
        for i, s in enumerate(self.shapes):
            entry = s.to_dict(self.preset.model.code_size)
            entry["nodes"] = grid.node_count(i) if grid is not None else 0
            if detail_bytes is not None:
                entry["detail_bytes"] = detail_bytes[i]
            shapes.append(entry)
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "backend_version": __version__,
            "preset": self.preset.name,
            "model": self.preset.model.to_dict(),
            "sample": self.preset.sample.to_dict(),
            "train": self.preset.train.to_dict(),
            "storage": self.preset.storage.to_dict(),
            "shapes": shapes,
            "history": self.history,
            "bytes": {"per_shape_code": self.code_bytes(), "shared": self.shared_bytes(),
                      "per_shape_detail_mean": int(np.mean(detail_bytes)) if detail_bytes else 0},
        }

    def tensors(self) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Every tensor the file stores, and each shape's stored detail bytes."""
        tensors = {"codes": self.codes.detach().float().cpu().contiguous()}
        dtype = torch.float16 if FORMAT_VERSION >= NETWORKS_IN_HALF_FROM else torch.float32
        tensors.update({k: v.detach().to(dtype).cpu().contiguous() for k, v in _network_tensors(self.model).items()})
        detail_bytes = [0] * len(self.shapes)
        if self.model.detail is not None:
            grid, codec = self.model.detail.grid, DetailCodec.of(self.preset.storage, FORMAT_VERSION)
            for i in range(len(self.shapes)):
                packed = codec.pack(grid.keys[i].numpy(), grid.shape_features(i), grid.resolution)
                tensors.update({f"shape{i}.{k}": torch.from_numpy(v.copy()) for k, v in packed.items()})
                detail_bytes[i] = sum(v.nbytes for v in packed.values())
        return tensors, detail_bytes

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash or cancel never leaves a half-written library at ``path``."""
        from safetensors.torch import save_file

        tensors, detail_bytes = self.tensors()
        metadata = {METADATA_KEY: json.dumps(self.metadata(detail_bytes))}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Library:
        """Read and validate a library file; LibraryError says what is wrong."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta = read_library_meta(path)
        if meta["format_version"] < OLDEST_READABLE_VERSION:
            raise LibraryError(
                f"{path}: library format {meta['format_version']} (one shared detail grid) is no longer supported; "
                f"re-encode its meshes: python -m backend encode MESHES... -o {Path(path).name} --overwrite")
        try:
            preset = Preset(str(meta["preset"]), SampleConfig.from_dict(meta["sample"]),
                            ModelConfig.from_dict(meta["model"], strict=True), TrainConfig.from_dict(meta["train"]),
                            DetailCodec.settings(meta["storage"]))
            shapes = [ShapeEntry(s["name"], Normalization.from_dict(s["transform"]), str(s.get("source_sha256", "")),
                                 dict(s.get("stats", {})), shape_frame(s)) for s in meta["shapes"]]
            node_counts = [s.get("nodes", 0) for s in meta["shapes"]]
            if any(type(n) is not int for n in node_counts):  # not 1.5, "12" or true: int() would take those
                raise ValueError("a shape's detail node count is not an integer")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise LibraryError(f"{path}: the library metadata is invalid ({exc})") from exc
        codec = DetailCodec.of(preset.storage, meta["format_version"])  # the layout of the format it was written in
        half = meta["format_version"] >= NETWORKS_IN_HALF_FROM
        _check_declared_sizes(path, preset.model, codec, len(shapes), node_counts, half)
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise LibraryError(f"{path}: the library tensors are unreadable ({exc})") from exc
        codes = tensors.pop("codes", None)
        if codes is None or codes.shape != (len(shapes), preset.model.code_size) or codes.dtype != torch.float32:
            raise LibraryError(f"{path}: codes are missing or not {len(shapes)} x {preset.model.code_size} float32")
        if not torch.isfinite(codes).all():
            raise LibraryError(f"{path}: codes hold NaN or infinite values")
        model = CompactSdf(preset.model)
        network = {k: v for k, v in tensors.items() if not k.startswith("shape")}
        _check_tensors(path, network, _network_tensors(model), torch.float16 if half else torch.float32)
        state = {k: v.float() for k, v in network.items()}
        if model.detail is not None:
            keys, features = [], []
            for i, count in enumerate(node_counts):
                stored = {k: tensors[f"shape{i}.{k}"].numpy() for k in codec.tensor_shapes(preset.model.grid_channels)}
                k, f = codec.unpack(stored, preset.model.grid_resolution, preset.model.grid_channels, count,
                                    f"{path}: shape {shapes[i].name!r}")
                keys.append(k)
                features.append(f)
            model.detail.grid.set_shapes(keys, features)
            state["detail.grid.features"] = model.detail.grid.features.detach()
        model.load_state_dict(state, strict=True)
        model.eval()
        return cls(preset, model.to(device), codes.to(device), shapes, list(meta.get("history", [])))


def _network_tensors(model: CompactSdf) -> dict[str, torch.Tensor]:
    """The shared networks' weights by name (each shape's grid is stored separately)."""
    return {k: v for k, v in model.state_dict().items() if k != "detail.grid.features"}


def _expected_shapes(config: ModelConfig, codec: DetailCodec, shape_count: int) -> dict[str, tuple[int, ...]]:
    """Every tensor name the file must hold with its shape (blobs: None), computed without allocating."""
    with torch.device("meta"):
        model = CompactSdf(config)
    shapes: dict[str, tuple[int, ...] | None] = {k: tuple(v.shape) for k, v in _network_tensors(model).items()}
    shapes["codes"] = (shape_count, config.code_size)
    if config.detail:
        for i in range(shape_count):
            shapes.update({f"shape{i}.{k}": v for k, v in codec.tensor_shapes(config.grid_channels).items()})
    return shapes  # type: ignore[return-value]


def _check_declared_sizes(path: str | Path, config: ModelConfig, codec: DetailCodec, shape_count: int,
                          node_counts: list[int], half: bool) -> None:
    """The file's tensors must be exactly those the metadata implies (networks in float16 if ``half``),
    before any of them is read."""
    header = {k: v for k, v in read_header(path).items() if k != "__metadata__"}
    expected = _expected_shapes(config, codec, shape_count)
    if set(header) != set(expected):
        missing, extra = sorted(set(expected) - set(header))[:5], sorted(set(header) - set(expected))[:5]
        raise LibraryError(f"{path}: the tensors do not match the metadata (missing {missing}, extra {extra})")
    for name, shape in expected.items():
        declared = header[name]
        if not isinstance(declared, dict) or not isinstance(declared.get("shape"), list):
            raise LibraryError(f"{path}: tensor {name} has no valid header entry")
        if shape is not None and tuple(declared["shape"]) != shape:
            raise LibraryError(f"{path}: tensor {name} has shape {tuple(declared['shape'])}, expected {shape}")
        want = "U8" if shape is None else "F16" if half and name != "codes" and not name.startswith("shape") else "F32"
        if declared.get("dtype") != want or (shape is None and len(declared["shape"]) != 1):
            got = _DTYPE_NAMES.get(declared.get("dtype"), declared.get("dtype"))
            raise LibraryError(f"{path}: tensor {name} has dtype {got}, expected {_DTYPE_NAMES[want]}"
                               + (" (a byte string)" if shape is None else ""))
    limit = config.grid_resolution**3
    if any(n < 0 or n > limit for n in node_counts):
        raise LibraryError(f"{path}: a shape declares more detail nodes than its {config.grid_resolution}^3 lattice has")


def _check_tensors(path: str | Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                   dtype: torch.dtype) -> None:
    for name, want in expected.items():
        tensor = tensors[name]
        if tensor.dtype != dtype:
            raise LibraryError(f"{path}: tensor {name} has dtype {tensor.dtype}, expected {dtype}")
        if tensor.shape != want.shape:
            raise LibraryError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(want.shape)}")
        if not torch.isfinite(tensor).all():
            raise LibraryError(f"{path}: tensor {name} holds NaN or infinite values")


def history_entry(kind: str, names: list[str], stats: dict) -> dict:
    """A record of one encode/add/remove/rename/replace run for the library's history."""
    return {"kind": kind, "shapes": names, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **stats}
