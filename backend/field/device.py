"""Device selection: CUDA > MPS > CPU unless the caller names one."""

from __future__ import annotations

import torch

from ..errors import CompactSdfError


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks the best available device; ``cpu``/``cuda``/``mps`` force one."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise CompactSdfError("CUDA was requested but torch sees no CUDA device")
    if preference == "mps" and not torch.backends.mps.is_available():
        raise CompactSdfError("MPS was requested but it is not available")
    if preference not in ("cpu", "cuda", "mps"):
        raise CompactSdfError(f"unknown device {preference!r}; use auto, cpu, cuda or mps")
    return torch.device(preference)
