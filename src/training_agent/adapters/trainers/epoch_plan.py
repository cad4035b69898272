"""How many epochs a run trains, why it stops, and the learning rate's schedule that goes with it.

An integer `epochs` is that many epochs (early stopping as configured, the `max_minutes` budget).
`epochs: auto` trains in warmup-stable-decay cycles. The first is long enough for the
`min_steps` floor (at least `MIN_CYCLE_EPOCHS` epochs); each cools the rate down to zero over
its last 30 %. Within the first cycle, once the floor is met, `early_stopping_patience` epochs
without a better validation accuracy start the cool-down at once. At a cycle's end, another
cycle of the same length follows only if the cycle beat the one before and the model was
still learning: validation accuracy was still improving when the cool-down began, or the
cool-down itself raised it by more than two standard errors of the validation split (a net
still taking off, as glyphs do after a long stretch at chance: one quality run stopped there
at 0.42 test accuracy, 0.2 -> 0.43 on validation during the cool-down); else training stops
(`plateau`). A later
cycle is not cut by patience: its full rate is not expected to beat the cooled-down best
before its own cool-down, so it runs its length and is judged at its end. The ceiling
(`max_epochs`) and the time budget (`max_minutes`) shorten a cycle so that its cool-down ends
within them. Every decision is said in a progress message, and the plan is in `state_dict`,
so a resumed run keeps it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from training_agent.domain.config import TrainingConfig

from .best_weights import standard_error
from .recipe import COOL_DOWN, Schedule, resolved_warmup_epochs

MIN_CYCLE_EPOCHS = 5  # `epochs: auto`: the shortest cycle


class EpochPlan:
    def __init__(self, cfg: TrainingConfig, steps: int, optimizer: Any, has_val: bool,
                 say: Callable[[str], None], val_images: int = 0) -> None:
        self.cfg, self.steps, self.has_val, self.say = cfg, steps, has_val, say
        self.val_images = val_images
        self.auto = cfg.epochs == "auto"
        self.max_epochs = cfg.max_epochs if self.auto else int(cfg.epochs)
        # `auto` trains in cycles, the first long enough for the `min_steps` floor
        self.cycle_epochs = min(self.max_epochs, max(MIN_CYCLE_EPOCHS,
                                                     math.ceil(cfg.min_steps / steps)))
        self.end_epoch = self.cycle_epochs if self.auto else self.max_epochs
        shape = "cosine" if cfg.pretrained and not self.auto else "linear"
        self.schedule = Schedule(optimizer, round(resolved_warmup_epochs(cfg) * steps),
                                 self.end_epoch * steps, shape)
        self.stop_reason = "epochs"
        self.cycle_best = -1.0  # best validation accuracy before the current cycle
        self.improving_at_cool_down = True
        self.best_at_cool_down = -1.0  # best validation accuracy when the cool-down began

    def after_epoch(self, epoch: int, seconds: float, elapsed: float, budget: float,
                    timed_out: bool, best_accuracy: float, improved_at: int) -> bool:
        """Whether training ends after `epoch` (which took `seconds`; `elapsed` since the run
        began, of `budget`); sets `stop_reason`. `auto` plans a cool-down instead of stopping
        at once."""
        cfg = self.cfg
        left = self.end_epoch - epoch
        stop = timed_out or bool(left and elapsed + seconds > budget)
        if stop:
            self.stop_reason = "max_minutes"
        elif self.auto:
            self._plan(epoch, seconds, elapsed, budget, best_accuracy, improved_at)
            return self.end_epoch <= epoch
        elif (left and cfg.early_stopping_patience is not None and self.has_val
              and epoch - improved_at >= cfg.early_stopping_patience):
            self.stop_reason, stop = "early_stopping", True
        if stop and left:
            self.say(f"stopped after epoch {epoch}/{self.end_epoch}: "
                     f"{self.stop_reason.replace('_', ' ')}")
            return True
        return left <= 0

    def cooled(self) -> bool:
        """Whether the rate ended cooled down (the last cool-down ran to its end)."""
        return self.schedule.factor(self.schedule.step_count) <= 0.05

    def _plan(self, epoch: int, seconds: float, elapsed: float, budget: float,
              best_accuracy: float, improved_at: int) -> None:
        cfg = self.cfg
        done = epoch * self.steps
        patience = cfg.early_stopping_patience
        stale = epoch - improved_at
        if epoch >= self.end_epoch:  # the cycle is over: its rate is at zero
            if self.stop_reason == "max_minutes":
                return
            improving = (self.has_val and best_accuracy > self.cycle_best
                         and (self.improving_at_cool_down
                              or self._cool_down_gain(best_accuracy)))
            room = self.max_epochs - epoch
            length = min(self.cycle_epochs, room)
            fits = elapsed + length * seconds <= budget
            if improving and length > 0 and fits:
                why = ("still improving" if self.improving_at_cool_down else
                       f"rose from {self.best_at_cool_down:.3f} to {best_accuracy:.3f} "
                       "during the cool-down")
                self.cycle_best = best_accuracy
                self.improving_at_cool_down = True
                self.schedule.restart(done, length * self.steps)
                self.end_epoch = epoch + length
                self.say(f"after epoch {epoch}: validation accuracy {why}; another "
                         f"cycle of {length} epoch{'s' if length > 1 else ''}")
            else:
                self.stop_reason = ("plateau" if not improving else
                                    "max_epochs" if length <= 0 else "max_minutes")
            return
        if self.schedule.cooling(done):
            return
        cycle_epochs = epoch - self.schedule.cycle_start // self.steps
        cool = max(1, math.ceil(COOL_DOWN * cycle_epochs))
        # patience cuts the first cycle only (see the module's docstring)
        if (patience is not None and self.has_val and stale >= patience
                and done >= cfg.min_steps and self.schedule.cycle_start == 0):
            why = f"validation accuracy has not improved for {stale} epochs"
            self.improving_at_cool_down = False
            self.best_at_cool_down = best_accuracy
        elif elapsed + (self.end_epoch - epoch) * seconds > budget:
            cool = max(0, int((budget - elapsed) / max(seconds, 1e-9)))
            why = f"the time limit max_minutes={cfg.max_minutes:g} is near"
            self.improving_at_cool_down = False
            self.stop_reason = "max_minutes"
        else:
            if self.schedule.cooling(done + self.steps):  # the planned cool-down begins next
                self.improving_at_cool_down = patience is None or stale < patience
                self.best_at_cool_down = best_accuracy
            return
        self.end_epoch = epoch + cool
        if cool > 0:
            self.schedule.cool_down(done, cool * self.steps)
            self.say(f"after epoch {epoch}: {why}; cooling the learning rate down over "
                     f"{cool} more epoch{'s' if cool > 1 else ''}")

    def _cool_down_gain(self, best_accuracy: float) -> bool:
        """Whether the cool-down raised the best validation accuracy by more than two
        standard errors of the validation split: the model was still learning."""
        if self.val_images <= 0 or self.best_at_cool_down < 0:
            return False
        return best_accuracy - self.best_at_cool_down > 2 * standard_error(
            best_accuracy, self.val_images)

    def state_dict(self) -> dict[str, Any]:
        return {"end_epoch": self.end_epoch, "stop_reason": self.stop_reason,
                "cycle_best": self.cycle_best,
                "improving_at_cool_down": self.improving_at_cool_down,
                "best_at_cool_down": self.best_at_cool_down}

    def load_state_dict(self, plan: dict[str, Any]) -> None:
        self.end_epoch = int(plan.get("end_epoch", self.end_epoch))
        self.stop_reason = str(plan.get("stop_reason", self.stop_reason))
        self.cycle_best = float(plan.get("cycle_best", self.cycle_best))
        self.improving_at_cool_down = bool(plan.get("improving_at_cool_down", True))
        self.best_at_cool_down = float(plan.get("best_at_cool_down", self.best_at_cool_down))
