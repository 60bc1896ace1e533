"""Checkpoints of a long encode, so an interrupted run (Ctrl-C, kill -9, a lost node) can resume.

A checkpoint is a directory beside the output, ``<output>.ckpt``, holding one safetensors file
per rank and generation (``<generation>-rank<r>.safetensors``: the model with this rank's detail
grids, the codes, the optimiser moments and the random generator) and ``latest.json``, which
names the last generation every rank finished writing. Each file is written atomically; rank 0
writes ``latest.json`` only after all ranks wrote theirs, so a crash at any moment leaves a
complete generation to resume from. Nothing is pickled: loading reads tensors and JSON only,
and every tensor is checked against the live run before it is used. Under several nodes the
directory must be on a filesystem all of them see. ``checkpoint_meta`` names the directory and
reads ``latest.json`` (phase, step, fraction done) without torch, for Blender's Resume.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic_io import atomic_write
from .checkpoint_meta import CHECKPOINT_SUFFIX, FORMAT as _FORMAT, LATEST as _LATEST, checkpoint_path, remove_checkpoint
from .distributed import Cluster, barrier, root_says
from ..errors import CheckpointError

__all__ = ["CHECKPOINT_SUFFIX", "Checkpointer", "TrainingState", "checkpoint_path", "fingerprint", "remove_checkpoint"]


def fingerprint(**facts: object) -> str:
    """A digest of what makes two runs the same run (shapes, settings, seed, process count)."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TrainingState:
    """One rank's saved training state: ``phase`` ("coarse" or "detail"), ``step`` steps done,
    ``fraction`` of the phase done (time budgets resume from it), tensors and JSON facts."""

    phase: str
    step: int
    fraction: float
    tensors: dict[str, torch.Tensor]
    facts: dict

    @property
    def codes(self) -> torch.Tensor:
        return self.tensors["codes"]

    def load_model(self, model: torch.nn.Module) -> None:
        """Copy the saved weights (and this rank's detail grids) into ``model``; shapes must match."""
        saved = {k[len("model."):]: v for k, v in self.tensors.items() if k.startswith("model.")}
        live = model.state_dict()
        if saved.keys() != live.keys() or any(saved[k].shape != live[k].shape for k in live):
            raise CheckpointError("the checkpoint's model does not fit this run (other settings or shapes); "
                                  "delete the checkpoint to start over")
        model.load_state_dict(saved)

    def load_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Restore the optimisers' moments and step counts."""
        groups = self.facts["param_groups"]
        if len(groups) != len(optimizers):
            raise CheckpointError("the checkpoint's optimisers do not fit this run; delete the checkpoint to start over")
        for i, (opt, param_groups) in enumerate(zip(optimizers, groups)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            prefix = f"optimizer{i}."
            for key, value in self.tensors.items():
                if key.startswith(prefix):
                    param, name = key[len(prefix):].split(".", 1)
                    state.setdefault(int(param), {})[name] = value
            try:
                opt.load_state_dict({"state": state, "param_groups": param_groups})
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint's optimiser state does not fit this run ({exc})") from exc

    def load_generator(self, gen: torch.Generator) -> None:
        gen.set_state(self.tensors["generator"])


def _capture(model: torch.nn.Module, codes: torch.Tensor, optimizers: list[torch.optim.Optimizer],
             gen: torch.Generator) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors["codes"] = codes.detach().cpu().contiguous()
    tensors["generator"] = gen.get_state()
    groups = []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        for param, values in sd["state"].items():
            for name, value in values.items():
                tensors[f"optimizer{i}.{param}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups.append(sd["param_groups"])
    return tensors, groups


class Checkpointer:
    """Saves a run's state every ``every_s`` seconds (rank 0's clock decides for all ranks)."""

    def __init__(self, directory: Path, every_s: float, run_id: str, cluster: Cluster) -> None:
        self.directory, self.every_s, self.run_id, self.cluster = Path(directory), every_s, run_id, cluster
        self._last = time.monotonic()
        self.generation = 0

    def due(self) -> bool:
        """True (on every rank alike) when the next checkpoint is due."""
        return root_says(time.monotonic() - self._last >= self.every_s, self.cluster)

    def save(self, phase: str, step: int, fraction: float, model: torch.nn.Module, codes: torch.Tensor,
             optimizers: list[torch.optim.Optimizer], gen: torch.Generator, facts: dict) -> None:
        """Write this rank's file of a new generation; rank 0 then points ``latest.json`` at it."""
        from safetensors.torch import save_file

        self.generation += 1
        tensors, groups = _capture(model, codes, optimizers, gen)
        meta = {"format": _FORMAT, "phase": phase, "step": step, "fraction": fraction, "run": self.run_id,
                "facts": {**facts, "param_groups": groups}}
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self._file(self.generation, self.cluster.rank),
                     lambda tmp: save_file(tensors, str(tmp), metadata={"checkpoint": json.dumps(meta)}))
        barrier(self.cluster)
        if self.cluster.is_root:
            latest = {"format": _FORMAT, "generation": self.generation, "world_size": self.cluster.world_size,
                      "run": self.run_id, "phase": phase, "step": step, "fraction": fraction,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write(self.directory / _LATEST, lambda tmp: tmp.write_text(json.dumps(latest)))
            for old in self.directory.glob("*-rank*.safetensors"):
                if not old.name.startswith(f"{self.generation}-"):
                    old.unlink(missing_ok=True)
        self._last = time.monotonic()

    def load(self) -> TrainingState:
        """This rank's state of the latest complete generation; CheckpointError if there is none or
        it belongs to another run."""
        from safetensors import SafetensorError, safe_open

        try:
            latest = json.loads((self.directory / _LATEST).read_text())
            generation, world, run = int(latest["generation"]), int(latest["world_size"]), str(latest["run"])
        except FileNotFoundError as exc:
            raise CheckpointError(f"no checkpoint to resume at {self.directory}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.directory / _LATEST} is unreadable ({exc}); delete the checkpoint to start over") from exc
        if world != self.cluster.world_size:
            how = f"with torchrun --nproc-per-node {world}" if world > 1 else "without torchrun"
            raise CheckpointError(f"the checkpoint was written by {world} process(es); resume it {how}")
        if run != self.run_id:
            raise CheckpointError(f"the checkpoint in {self.directory} belongs to another run (other meshes, settings "
                                  "or seed); run the same command to resume it, or delete it to start over")
        path = self._file(generation, self.cluster.rank)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["checkpoint"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("format") != _FORMAT or meta.get("run") != run:
                raise ValueError("foreign or mismatched file")
            state = TrainingState(str(meta["phase"]), int(meta["step"]), float(meta["fraction"]), tensors, dict(meta["facts"]))
        except (OSError, SafetensorError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint file {path} is unreadable ({exc}); delete the checkpoint to start over") from exc
        if state.phase not in ("coarse", "detail") or state.step < 0 or not {"codes", "generator"} <= tensors.keys():
            raise CheckpointError(f"checkpoint file {path} is incomplete; delete the checkpoint to start over")
        self.generation = generation
        return state

    def exists(self) -> bool:
        return (self.directory / _LATEST).is_file()

    def _file(self, generation: int, rank: int) -> Path:
        return self.directory / f"{generation}-rank{rank}.safetensors"
