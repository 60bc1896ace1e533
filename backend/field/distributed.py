"""Training on several processes with ``torch.distributed`` (launched by ``torchrun``).

Shapes are split between ranks (shape ``i`` belongs to rank ``i % world_size``). A rank samples
and holds only its own shapes: their sample pools and their detail grids. The parts every shape
shares — the codes, the coarse branch and the detail MLP — are replicas that stay identical:
they start from rank 0's values and every step sums their gradients over the ranks. Each rank's
batch is its share of the global batch (proportional to its shapes, or to its stored nodes in
the detail phase), so the summed gradient is the single-process gradient of the same global
batch. A detail grid row belongs to exactly one shape and so to exactly one rank: its sparse
updates are complete on that rank and need no reduction; rank 0 gathers the finished grids.

With one process every function here is a no-op, so the single-process path is the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import BadInputError


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def owned(self, count: int) -> list[int]:
        """The shapes (of ``count``) this rank samples and trains: every world_size-th one."""
        return list(range(self.rank, count, self.world_size))

    def owner(self, shape: int) -> int:
        return shape % self.world_size


SINGLE = Cluster()


def launched_by_torchrun() -> bool:
    """True when the environment holds a torchrun rendezvous with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> tuple[Cluster, torch.device]:
    """Join the torchrun process group (NCCL on CUDA, gloo otherwise); (cluster, this rank's device).

    Outside torchrun (or with one process) returns the single-process cluster and ``device``.
    """
    if not launched_by_torchrun():
        return SINGLE, device
    cluster = Cluster(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", cluster.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return cluster, device


def leave() -> None:
    """Tear the process group down (safe to call when none was started)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def check_shape_count(cluster: Cluster, count: int) -> None:
    """Refuse a job that would leave a rank without shapes."""
    if count < cluster.world_size:
        raise BadInputError(f"{count} shape(s) for {cluster.world_size} processes: every process needs at least one "
                            f"shape; run with --nproc-per-node {max(1, count)} or fewer")


def _wire() -> torch.device:
    """Where collective buffers must live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_(tensors: Iterable[torch.Tensor], cluster: Cluster) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's values, in place."""
    if cluster.distributed:
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)


def sum_gradients(params: Sequence[torch.Tensor], cluster: Cluster) -> None:
    """Sum the dense gradients of replicated ``params`` over the ranks in one collective (missing = 0)."""
    if not cluster.distributed or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p)


def total(value: float, cluster: Cluster) -> float:
    """The sum of ``value`` over the ranks."""
    if not cluster.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_wire())
    dist.all_reduce(t)
    return float(t.item())


def root_says(flag: bool, cluster: Cluster) -> bool:
    """Rank 0's ``flag``, on every rank (so all ranks take the same branch)."""
    if not cluster.distributed:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_wire())
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(cluster: Cluster) -> None:
    if cluster.distributed:
        dist.barrier()


def gather_to_root(local: dict[int, torch.Tensor], count: int, cluster: Cluster, *, dtype: torch.dtype,
                   width: int) -> dict[int, torch.Tensor]:
    """Every shape's (k, width) tensor on rank 0, from the rank that owns it ({shape: tensor} there).

    Point-to-point sends, one shape at a time, so rank 0 never holds more than the result.
    Other ranks get an empty dict.
    """
    if not cluster.distributed:
        return dict(local)
    out: dict[int, torch.Tensor] = {}
    wire = _wire()
    for shape in range(count):
        owner = cluster.owner(shape)
        if owner == 0:
            if cluster.is_root:
                out[shape] = local[shape].cpu()
            continue
        if cluster.rank == owner:
            t = local[shape].detach().to(wire, dtype).contiguous().reshape(-1, width)
            dist.send(torch.tensor([len(t)], dtype=torch.int64, device=wire), dst=0)
            dist.send(t, dst=0)
        elif cluster.is_root:
            size = torch.zeros(1, dtype=torch.int64, device=wire)
            dist.recv(size, src=owner)
            t = torch.empty(int(size.item()), width, dtype=dtype, device=wire)
            dist.recv(t, src=owner)
            out[shape] = t.cpu()
    return out
