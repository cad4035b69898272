"""Ranks are this adapter's business (docs/distributed.md). Under torchrun, rank 0 runs the job
through the service like any job; when its training starts, the trainer hands the job's
TrainRequest to the other ranks (`hand_over`), which wait for it (`receive`) and then run only
the training loop (PyTorchTrainer.follow). Rank 0 says `None` when its job ended before
training (refused, failed or cancelled), so the followers stop too.

The hand-over goes over a gloo group of its own with a long timeout: the followers wait there
while rank 0 downloads and extracts the dataset, which may take longer than the default
collective timeout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from training_agent.domain.ports import TrainRequest

from . import environment
from .distributed import init_process_group

WAIT = timedelta(hours=24)  # how long a follower waits for rank 0's hand-over


class Ranks:
    """This process's place among torchrun's ranks, once joined."""

    def __init__(self) -> None:
        """Join torchrun's process group (nccl for CUDA tensors when a GPU is there, gloo for
        the rest) and the hand-over's own gloo group."""
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(environment.current().local_rank)
        init_process_group(use_cuda)
        self.rank = dist.get_rank()
        self.group = dist.new_group(backend="gloo", timeout=WAIT)
        self.handed_over = False

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def share(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (the followers wait up to `WAIT` for it)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def hand_over(self, request: TrainRequest | None) -> None:
        """Rank 0: the job's request to the followers, once (later calls do nothing)."""
        if self.primary and not self.handed_over:
            self.handed_over = True
            self.share(None if request is None else request.model_dump_json())

    def receive(self) -> TrainRequest | None:
        """A follower: rank 0's request, or None when its job will not train."""
        sent = self.share(None)
        return None if sent is None else TrainRequest.model_validate_json(sent)

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


_joined: Ranks | None = None


def join() -> Ranks:
    """Join torchrun's ranks (once per process); the trainer then hands its requests over."""
    global _joined
    if _joined is None:
        _joined = Ranks()
    return _joined


def joined() -> Ranks | None:
    """The ranks this process joined, or None outside torchrun's entry point."""
    return _joined


def leave() -> None:
    global _joined
    if _joined is not None:
        _joined.leave()
        _joined = None
