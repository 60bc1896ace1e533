"""The latent library: shared networks and grid, named per-shape codes, transforms and stats.

One ``.csdf`` file = safetensors tensors + JSON metadata (see ``library_meta``), written
atomically (temporary file, fsync, rename). Loading never executes code and validates every
tensor against the stored configuration.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic_io import atomic_write
from .config import Preset, TrainConfig
from .errors import LibraryError
from .library_meta import FORMAT_NAME, FORMAT_VERSION, METADATA_KEY, read_library_meta
from .meshes import Normalization
from .model import CompactSdf, ModelConfig
from .sampling import SampleConfig


@dataclass
class ShapeEntry:
    """One shape of a library: its name, normalisation and what was measured at encode time."""

    name: str
    transform: Normalization
    source_sha256: str = ""
    stats: dict = field(default_factory=dict)

    def to_dict(self, code_size: int) -> dict:
        return {"name": self.name, "code_size": code_size, "transform": self.transform.to_dict(),
                "source_sha256": self.source_sha256, "stats": self.stats}


class Library:
    """Shared model + codes (N, D) + one ShapeEntry per code row."""

    def __init__(self, preset: Preset, model: CompactSdf, codes: torch.Tensor, shapes: list[ShapeEntry],
                 history: list[dict] | None = None) -> None:
        if len(codes) != len(shapes):
            raise LibraryError(f"{len(codes)} codes but {len(shapes)} shape entries")
        names = [s.name for s in shapes]
        if len(set(names)) != len(names):
            raise LibraryError("duplicate shape names in library")
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

    def shape_info(self, name: str) -> dict:
        """Metadata of one shape (code size, transform, source hash, encode-time stats)."""
        return self.shapes[self.index(name)].to_dict(self.preset.model.code_size)

    def code_bytes(self) -> int:
        """Bytes of one shape's code as stored."""
        return self.codes.shape[1] * self.codes.element_size()

    def shared_bytes(self) -> int:
        """Bytes of everything shared (networks and grid) as stored."""
        return sum(t.numel() * t.element_size() for t in _shared_tensors(self.model).values())

    def copy(self) -> Library:
        """A deep copy (training a copy leaves this library untouched)."""
        return Library(self.preset, copy.deepcopy(self.model), self.codes.detach().clone(),
                       copy.deepcopy(self.shapes), copy.deepcopy(self.history))

    def metadata(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "backend_version": __version__,
            "preset": self.preset.name,
            "model": self.preset.model.to_dict(),
            "sample": self.preset.sample.to_dict(),
            "train": self.preset.train.to_dict(),
            "shapes": [s.to_dict(self.preset.model.code_size) for s in self.shapes],
            "history": self.history,
            "bytes": {"per_shape_code": self.code_bytes(), "shared": self.shared_bytes()},
        }

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash or cancel never leaves a half-written library at ``path``."""
        from safetensors.torch import save_file

        tensors = {"codes": self.codes.detach().float().cpu().contiguous()}
        tensors.update({k: v.detach().cpu().contiguous() for k, v in _shared_tensors(self.model).items()})
        metadata = {METADATA_KEY: json.dumps(self.metadata())}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Library:
        """Read and validate a library file; LibraryError says what is wrong."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta = read_library_meta(path)
        try:
            preset = Preset(meta["preset"], SampleConfig.from_dict(meta["sample"]),
                            ModelConfig.from_dict(meta["model"]), TrainConfig.from_dict(meta["train"]))
            shapes = [ShapeEntry(s["name"], Normalization.from_dict(s["transform"]), str(s.get("source_sha256", "")),
                                 dict(s.get("stats", {}))) for s in meta["shapes"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise LibraryError(f"{path}: the library metadata is invalid ({exc})") from exc
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise LibraryError(f"{path}: the library tensors are unreadable ({exc})") from exc
        model = CompactSdf(preset.model)
        expected = _shared_tensors(model)
        codes = tensors.pop("codes", None)
        if codes is None or codes.shape != (len(shapes), preset.model.code_size) or codes.dtype != torch.float32:
            raise LibraryError(f"{path}: codes are missing or of the wrong size or dtype (expected float32)")
        if model.detail is not None:
            keys = tensors.get("detail.grid.keys")
            if keys is None or keys.dtype != torch.int32 or keys.ndim != 1:
                raise LibraryError(f"{path}: grid node keys are missing" if keys is None else f"{path}: grid node keys have "
                                   f"dtype {str(keys.dtype)[6:]} and {keys.ndim} dimensions, expected int32 and 1")
            k = keys.numpy().astype(np.int64)
            if len(k) and (k.min() < 0 or k.max() >= preset.model.grid_resolution**3 or np.any(np.diff(k) <= 0)):
                raise LibraryError(f"{path}: grid node keys are invalid")
            model.detail.grid.set_nodes(k)
            expected = _shared_tensors(model)
        if set(tensors) != set(expected):
            raise LibraryError(f"{path}: unexpected tensors (missing {sorted(set(expected) - set(tensors))}, "
                               f"extra {sorted(set(tensors) - set(expected))})")
        for name, tensor in tensors.items():
            if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
                raise LibraryError(f"{path}: tensor {name} has shape {tuple(tensor.shape)} and dtype {str(tensor.dtype)[6:]}, "
                                   f"expected {tuple(expected[name].shape)} and {str(expected[name].dtype)[6:]}")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise LibraryError(f"{path}: tensor {name} holds NaN or infinite values")
        if not torch.isfinite(codes).all():
            raise LibraryError(f"{path}: codes hold NaN or infinite values")
        state = {k: v for k, v in tensors.items() if k != "detail.grid.keys"}
        model.load_state_dict(state, strict=True)
        model.eval()
        return cls(preset, model.to(device), codes.to(device), shapes, list(meta.get("history", [])))


def _shared_tensors(model: CompactSdf) -> dict[str, torch.Tensor]:
    """Every shared tensor that a library stores, by name (node keys as int32: half the bytes)."""
    tensors = dict(model.state_dict())
    if model.detail is not None:
        tensors["detail.grid.keys"] = model.detail.grid.keys.to(torch.int32)
    return tensors


def history_entry(kind: str, names: list[str], stats: dict) -> dict:
    """A record of one encode/add/invert run for the library's history."""
    return {"kind": kind, "shapes": names, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **stats}
