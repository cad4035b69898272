"""Which weights a job hands back: the best validation epoch's, unless the learning rate ended
cooled down and the last epoch's validation accuracy is within one binomial standard error of
that best. A small validation split cannot tell those two apart (32 images: +/-0.09), and the
last weights are the ones the cool-down annealed: measured on small data they test better than
a noisy earlier 'best' (docs/trainer.md, "Which weights are handed back")."""

from __future__ import annotations

import math


def standard_error(accuracy: float, images: int) -> float:
    """The binomial standard error of an accuracy measured on `images` images."""
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / images)


def last_is_as_good(best_accuracy: float, last_accuracy: float, images: int) -> bool:
    """Whether the last epoch is within one standard error of the best (on `images`
    validation images); the caller asks only when the rate ended cooled down."""
    return images > 0 and best_accuracy - last_accuracy <= standard_error(best_accuracy, images)
