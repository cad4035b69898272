"""The project's checkpoint, as a run uses it: read once at the start (rank 0 reads it, every
rank gets it) so that a run of the same config and dataset resumes where a stopped one left
off. Rank 0 takes a copy of the state in memory at every epoch's end (into the previous epoch's
copy while that was not handed to the writer: checkpoints.snapshot) and writes it to disk in
the background (checkpoints.BackgroundWriter) at most every `checkpoint_seconds` (setting
`TRAINING_AGENT_CHECKPOINT_SECONDS`, default 30; 0: every epoch), and always when the run
ends by an exception (cancelled, failed, interrupted by a signal): a job stopped that way
resumes from its last finished epoch; a job killed outright (SIGKILL, a lost machine) from
the last one written, at most that many seconds of training back. Why not every epoch: on a
2-core CPU writing ResNet-18's 134 MB (weights and AdamW's moments) took 0.35 s beside a 1 s
epoch, a quarter of the training time on small datasets (docs/trainer.md)."""

from __future__ import annotations

import time
from typing import Any

import torch

from . import checkpoints, environment
from .learner import Learner
from .run_context import RunContext


class Checkpointer:
    def __init__(self, ctx: RunContext, learner: Learner, class_names: list[str]) -> None:
        self.ctx, self.learner = ctx, learner
        self.folder = ctx.req.checkpoint_dir
        self.fingerprint = checkpoints.fingerprint(
            learner.resolved_config(ctx), ctx.req.dataset_sha256, class_names)
        self.writer = checkpoints.BackgroundWriter()
        self.interval = environment.current().checkpoint_seconds
        self.latest: dict[str, Any] | None = None  # the last epoch's state, not yet on disk
        self.written_at = time.monotonic()  # the run's start counts as a write

    def load(self, max_epochs: int) -> dict[str, Any] | None:
        """A usable checkpoint of this run (its fingerprint matches, its tensors fit the
        model), already loaded into the model, optimizer, scaler and RNG; None to start fresh.
        The caller restores the schedule, the plan and its own state from it."""
        state = None
        if self.ctx.dist.primary:
            try:
                state = checkpoints.load(self.folder)
                if state is not None and state["fingerprint"] != self.fingerprint:
                    self.ctx.say("found a checkpoint of another config or dataset; starting "
                                 "fresh")
                    checkpoints.clear(self.folder)
                    state = None
                elif state is not None:
                    self._check_fits(state, max_epochs)
            except checkpoints.Unreadable as exc:  # torn or foreign: never a reason to fail
                self.ctx.say(f"ignored an unusable checkpoint ({exc}); starting fresh")
                checkpoints.clear(self.folder)
                state = None
        state = self.ctx.dist.from_primary(state)
        if state is not None:
            learner = self.learner
            learner.model.load_state_dict(state["model"])
            learner.optimizer.load_state_dict(state["optimizer"])
            learner.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"])
        return state

    def _check_fits(self, state: dict[str, Any], max_epochs: int) -> None:
        """Before anything is loaded: the checkpoint's tensors are exactly the model's."""
        own = self.learner.model.state_dict()
        theirs = state["model"]
        bad = sorted(set(own) ^ set(theirs)) or [
            k for k in own if tuple(own[k].shape) != tuple(theirs[k].shape)]
        if bad or not 1 <= int(state["epoch"]) <= max_epochs:
            raise checkpoints.Unreadable(
                f"{checkpoints.NAME} does not fit this model (epoch {state['epoch']}; "
                f"tensors {', '.join(bad[:5]) or 'ok'})")

    def save(self, epoch: int, **more: Any) -> None:
        """Rank 0 keeps a copy of the epoch's state (`more`: the loop's own: history, best,
        schedule, plan) and writes it in the background when `interval` seconds have passed
        since the last write."""
        if not self.ctx.dist.primary:
            return
        learner = self.learner
        # into the last epoch's copy when it was not written (nothing else holds it); a copy
        # handed to the writer is left alone, and the next epoch's is allocated afresh
        self.latest = checkpoints.snapshot({
            "fingerprint": self.fingerprint, "epoch": epoch, "model": learner.model.state_dict(),
            "optimizer": learner.optimizer.state_dict(), "scaler": learner.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(), **more}, into=self.latest)
        if time.monotonic() - self.written_at >= self.interval:
            self._write()

    def _write(self) -> None:
        if self.latest is not None:
            self.writer.save(self.folder, self.latest)
            self.latest, self.written_at = None, time.monotonic()

    def flush(self) -> None:
        """The last finished epoch's state on disk, now (a run ending by an exception)."""
        self._write()
        self.wait()

    def wait(self) -> None:
        """The last checkpoint is on disk (or its write's error raised)."""
        self.writer.wait()

    def clear(self) -> None:
        checkpoints.clear(self.folder)
