"""A terminal progress bar fed by a job's progress updates."""

from __future__ import annotations

import contextlib
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from training_agent.domain.models import TrainingJob


class JobProgressBar:
    """Shows epochs (fractional within an epoch), loss, validation accuracy and speed.

    While the bar is on screen, log lines to the terminal go through tqdm (each on its own line
    above the bar, never glued to its end), and the bar ends with one final line on close."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self.bar: tqdm | None = None
        self.kwargs = tqdm_kwargs
        self._logs = contextlib.ExitStack()

    def __call__(self, job: TrainingJob) -> None:
        p = job.progress
        epochs, epoch = p.get("epochs"), p.get("epoch")
        if not epochs or epoch is None:
            return
        if self.bar is None:
            self.bar = tqdm(total=float(epochs), unit="epoch", desc="training",
                            bar_format="{l_bar}{bar}| {n:.2f}/{total:.0f} epochs "
                                       "[{elapsed}<{remaining}{postfix}]", **self.kwargs)
            if not self.bar.disable:
                self._logs.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))
        if self.bar.total != float(epochs):  # `epochs: auto` may plan another cycle
            self.bar.total = float(epochs)
        done = epoch if p.get("step") is None else epoch - 1 + p["step"] / max(1, p["steps"])
        self.bar.n = min(float(done), float(epochs))
        post = {k: (f"{p[k]:.3f}" if isinstance(p.get(k), float) else p.get(k))
                for k in ("train_loss", "val_accuracy", "images_per_second") if k in p}
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        """Print the bar's final line once (and a newline), then log lines go out directly."""
        if self.bar is not None:
            self.bar.close()
        self._logs.close()
