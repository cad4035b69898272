"""The distributed context of this process: rank and world from torchrun's environment, the
process group (gloo on CPU, nccl on CUDA), and the few collectives the loop needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


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
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                   local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

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

    def from_primary(self, obj: Any) -> Any:
        """Rank 0's value of `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: list[Any]) -> list[Any]:
        return items[self.rank::self.world]
