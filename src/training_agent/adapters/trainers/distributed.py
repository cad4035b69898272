"""The distributed context of this process: rank and world from torchrun's environment, the
process group (gloo on CPU, nccl on CUDA), and the few collectives the loop needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from . import environment


def init_process_group(use_cuda: bool) -> None:
    """Join torchrun's group once. With CUDA, gradients go over nccl and the loop's small CPU
    tensors (flags, counts, broadcast objects) over gloo: one group, two backends."""
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def primary(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, use_cuda: bool) -> DistContext:
        """Join the process group torchrun describes (WORLD_SIZE > 1); a single process else."""
        env = environment.current()
        world = env.world_size
        if world <= 1:
            return cls()
        local_rank = env.local_rank
        if use_cuda:
            torch.cuda.set_device(local_rank)
        init_process_group(use_cuda)
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                   local_world=env.local_world_size or world)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def min(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return t

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Average BatchNorm running statistics (and any float buffer) across ranks, in place,
        so every rank evaluates and saves the same model."""
        if not self.active:
            return
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                buf.div_(self.world)

    def from_primary(self, obj: Any) -> Any:
        """Rank 0's value of `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: list[Any]) -> list[Any]:
        return items[self.rank::self.world]
