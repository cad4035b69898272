"""The epochs of a run: steps over this rank's shuffled share of the training images, then
validation, the best weights kept, the epoch plan asked whether to go on (epoch_plan.py), a
checkpoint written and progress reported. Built after the learner; a resumed run starts where
its checkpoint left off."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from training_agent.domain.ports import EpochProgress

from . import colour_check
from .augment import shift_strength
from .average import WeightAverage, half_life_steps
from .best_weights import BestWeights
from .clock import Tally
from .data import IGNORE, chunks_of, epoch_order, epoch_seed
from .epoch_plan import EpochPlan
from .evaluation import accuracy, logits_of
from .learner import Learner
from .recipe import augment_ramp_epochs, scratch_auto
from .resume import Checkpointer
from .run_context import RunContext
from .run_data import RunData

LOSS_READ_SECONDS = 1.0  # how often rank 0 reads the running loss for its progress


class EpochLoop:
    def __init__(self, ctx: RunContext, data: RunData, learner: Learner,
                 on_epoch_end: Callable[[], None]) -> None:
        self.ctx, self.data, self.learner = ctx, data, learner
        self.on_epoch_end = on_epoch_end  # the dataset check's begin and end (reporting)
        steps = learner.batch.steps
        self.plan = EpochPlan(ctx.cfg, steps, learner.optimizer, data.has_val, ctx.say,
                              data.total(ctx, "val"))
        self.history: list[dict[str, Any]] = []
        ctx.position = lambda: (len(self.history), self.plan.end_epoch)
        self.checkpoints = Checkpointer(ctx, learner, ctx.req.splits.class_names)
        state = self.checkpoints.load(self.plan.max_epochs)
        self.best = BestWeights(data.has_val)
        # from scratch, validation and the handed-back weights are an average (average.py)
        self.average = None if ctx.cfg.pretrained else WeightAverage(
            learner.model, half_life_steps(steps, self.plan.end_epoch * steps))
        # the model validation judges when it is not the live one: the average
        self.judged = self.average.model if self.average is not None else None
        # `auto` from scratch: the shift grows over the first half of the (first) cycle's epochs
        self.ramp_epochs = augment_ramp_epochs(ctx.cfg, self.plan.end_epoch)
        self.colour: dict[str, Any] | None = None  # colour_check's answer, once asked
        self.start_epoch = 1
        if state is not None:
            if self.average is not None and state.get("average"):
                self.average.load_state_dict(state["average"])
            self.plan.schedule.load_state_dict(state["schedule"])
            self.history = list(state["history"])
            plan = state.get("plan") or {}
            self.plan.load_state_dict(plan)
            self.best = BestWeights(data.has_val, state["best"], plan.get("improved_at"))
            self.start_epoch = int(state["epoch"]) + 1
            ctx.say(f"resuming from checkpoint of epoch {state['epoch']}/{self.plan.end_epoch}")

    def run(self) -> None:
        """Train until the plan says stop. A run that ends by an exception (cancelled,
        failed, interrupted) leaves its last finished epoch on disk to resume from."""
        try:
            self._run()
        except BaseException:
            try:
                self.checkpoints.flush()
            except Exception as exc:  # the run's own error is the one to report
                self.ctx.say(f"the last checkpoint could not be written: {exc}")
            raise
        finally:
            self.checkpoints.wait()

    def _run(self) -> None:
        ctx, plan = self.ctx, self.plan
        budget = ctx.cfg.max_minutes * 60 if ctx.cfg.max_minutes else math.inf
        t_train = time.monotonic()
        tally = Tally()  # the parts of train_seconds (docs/trainer.md: manifest)
        epoch = self.start_epoch
        while epoch <= plan.end_epoch:
            t0 = time.monotonic()
            strength = set_augment(self, epoch)
            with tally("steps_seconds"):
                loss, train_acc, seen, timed_out = self.epoch(epoch, budget, t_train)
            self.data.settle(ctx)  # a cache filled during this epoch: its skips, its timing
            self.on_epoch_end()  # the dataset check begins, or says its summary if done
            ctx.dist.average_buffers(self.learner.model)
            if self.average is not None:
                ctx.dist.average_buffers(self.average.model)
            seconds = time.monotonic() - t0
            with tally("validation_seconds"):
                cm, val_loss = self.learner.confusion(ctx, self.data, "val", self.judged)
            val_acc = accuracy(cm)
            ips = seen / seconds if seconds else 0.0
            self.history.append({
                "epoch": epoch, "train_loss": loss, "val_loss": val_loss, "val_accuracy": val_acc,
                "lr": self.learner.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
                "images_per_second": round(ips, 1), "train_accuracy": train_acc,
                "augment_strength": strength})
            self.best.consider(epoch, val_acc, val_loss, self.judged or self.learner.model)
            stop = plan.after_epoch(epoch, seconds, time.monotonic() - ctx.t_start, budget,
                                    timed_out, self.best.accuracy, self.best.improved_at)
            self.checkpoints.save(  # after the plan: a resumed run keeps it
                epoch, schedule=plan.schedule.state_dict(), history=self.history,
                best=self.best.as_dict(),
                plan={**plan.state_dict(), "improved_at": self.best.improved_at},
                average=self.average.state_dict() if self.average is not None else None)
            ctx.report(EpochProgress(
                epoch=epoch, epochs=plan.end_epoch, train_loss=loss, val_accuracy=val_acc,
                images_per_second=ips, eta_seconds=(plan.end_epoch - epoch) * seconds))
            if stop:
                break
            epoch += 1
        ctx.timings["train_seconds"] = round(time.monotonic() - t_train, 3)
        ctx.timings.update(tally.split(ctx.timings["train_seconds"], "epoch_end_seconds"))

    def epoch(self, epoch: int, budget: float, t_train: float) -> tuple[float, float, int, bool]:
        """One epoch's steps: (mean training loss, training accuracy of its batches as
        augmented, images seen over every rank, whether the time budget ran out during it)."""
        ctx, learner = self.ctx, self.learner
        steps, done_steps = learner.batch.steps, (epoch - self.start_epoch) * learner.batch.steps
        learner.step_model.train()
        base = epoch_seed(ctx.cfg.seed, epoch)
        torch.manual_seed(base * 7919 + ctx.dist.rank)  # dropout and the like
        order = epoch_order(len(self.data["train"]), ctx.cfg.seed, epoch)
        if self.data.gpu_cache and not self.data["train"].filling:
            order = order.to(ctx.device)  # one copy an epoch: no step waits on a copy (a
            # cache still filling takes the order on the CPU, to know which rows to wait for)
        aug_gen = torch.Generator(device=ctx.device).manual_seed(base * 31 + ctx.dist.rank)
        # loss x images, images and right answers, summed on the device: a step never waits
        # for the GPU (reading a value would); rank 0 reads them when it reports, at most
        # every LOSS_READ_SECONDS, and every rank at the epoch's end
        sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)
        t0 = last_read = time.monotonic()
        timed_out, seen, train_loss = False, 0, None
        chunks = chunks_of(order, learner.batch.per_rank, steps)[:steps]
        for step, (images, labels) in enumerate(self.data["train"].batches(chunks), 1):
            x = learner.transform.train(images, aug_gen)
            y = labels.to(ctx.device, non_blocking=True)
            with learner.autocast():
                out = logits_of(learner.step_model(x)).float()
                loss = learner.criterion(out, y)
            learner.optimizer.zero_grad(set_to_none=True)
            learner.scaler.scale(loss).backward()
            learner.scaler.step(learner.optimizer)
            learner.scaler.update()
            self.plan.schedule.step()
            if self.average is not None:
                self.average.update(learner.model)
            n = (y != IGNORE).sum()
            right = (out.detach().argmax(1) == y).sum()
            sums += torch.stack([loss.detach().double() * n, n.double(), right.double()])
            seen += len(y)
            if done_steps == 0 and step == 1:  # this process's first step, run to its end
                float(sums[1])
                first_step(ctx, time.monotonic() - t0)
            now = time.monotonic()
            if ctx.dist.primary and (now - last_read >= LOSS_READ_SECONDS
                                     or step == len(chunks)):
                read = sums.tolist()
                train_loss, last_read = read[0] / max(1.0, read[1]), now
            per_step = (now - t_train) / (done_steps + step)
            timed_out = ctx.report(EpochProgress(
                epoch=epoch, epochs=self.plan.end_epoch, step=step, steps=steps,
                train_loss=train_loss,
                images_per_second=seen * ctx.dist.world / max(1e-9, now - t0),
                eta_seconds=per_step * ((self.plan.end_epoch - epoch + 1) * steps - step),
            ), over_budget=now - ctx.t_start > budget)
            if timed_out:
                break
        total = ctx.dist.sum(sums.cpu()).tolist()
        images = max(1.0, total[1])
        return total[0] / images, total[2] / images, int(total[1]), timed_out


def hand_back_weights(loop: EpochLoop) -> None:
    """Load the weights the job hands back (best_weights.py says which; the average's)."""
    if loop.average is not None:
        loop.learner.model.load_state_dict(loop.average.model.state_dict())
    loop.best.hand_back(loop.learner.model, loop.history[-1] if loop.history else None,
                        loop.plan.cooled(), loop.data.total(loop.ctx, "val"), loop.ctx.say)


def set_augment(loop: EpochLoop, epoch: int) -> float:
    """The epoch's augmentation: the shift's strength (the ramp), and with `auto` from scratch,
    before the first augmented epoch (the whole training split has been through one epoch: a
    cache filling meanwhile is full), colour_check.py's question: `shift-colour` if colours do
    not tell the classes apart. Asked again on resuming: the same sample, the same answer."""
    ctx, transform = loop.ctx, loop.learner.transform
    transform.strength = strength = shift_strength(epoch, loop.ramp_epochs)
    if strength > 0 and scratch_auto(ctx.cfg) and loop.colour is None:
        feats, labels = colour_check.sample_of(loop.data["train"], ctx.cfg.seed + ctx.dist.rank)
        loop.colour = colour_check.check(feats, labels, len(ctx.req.splits.class_names),
                                         ctx.dist.sum)
        if loop.colour["colour_invariance"]:
            transform.use("shift-colour")
        ctx.say(colour_check.sentence(loop.colour))
    return strength


def first_step(ctx: RunContext, seconds: float) -> None:
    """The first step's time is in the timings; with `compile` it is mostly the compilation,
    and the job's log says so (docs/trainer.md: when compiling pays)."""
    ctx.timings["first_step_seconds"] = round(seconds, 3)
    if ctx.cfg.compile:
        ctx.say(f"torch.compile: the first step took {seconds:.1f} s, compilation "
                "included; it pays only on long jobs (docs/trainer.md)")
