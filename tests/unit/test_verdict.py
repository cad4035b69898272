"""The verdict rule and the finished job's metrics object (pure domain, no trainer)."""

from __future__ import annotations

from math import comb

import pytest

from training_agent.domain.ports import Notification
from training_agent.domain.verdict import (
    binomial_tail,
    job_metrics,
    judge,
    summarize,
    worst_classes,
)
from training_agent.domain.views import JobMetricsView, job_summary

ADVICE = "try more epochs, a larger image size, or pretrained weights"


def matrix(rows: list[list[int]], split: str = "test") -> dict:
    return {"split": split, "labels": [f"c{i}" for i in range(len(rows))], "matrix": rows}


def metrics_of(rows: list[list[int]], split: str = "test", **extra) -> dict:
    """Trainer-shaped metrics whose accuracy is the matrix's."""
    n = sum(map(sum, rows))
    acc = sum(rows[i][i] for i in range(len(rows))) / n if n else 0.0
    m = {"val_accuracy": acc, "confusion_matrix": matrix(rows, split), **extra}
    if split == "test":
        m["test_accuracy"] = acc
    return m


def diagonal(classes: int, per_class: int, right: int) -> list[list[int]]:
    """Each class has `per_class` images, `right` of them answered correctly (the rest go to
    the next class)."""
    rows = []
    for i in range(classes):
        row = [0] * classes
        row[i] = right
        row[(i + 1) % classes] += per_class - right
        rows.append(row)
    return rows


def test_one_in_ten_on_ten_classes_is_chance_level_in_plain_words():
    verdict = judge(metrics_of(diagonal(10, 10, 1)))
    assert verdict == {"level": "chance", "text": "0.10 is chance level for 10 classes: the "
                       f"model has not learned; {ADVICE}."}


def test_accuracy_equal_to_the_majority_rate_is_chance_even_far_above_one_in_k():
    # 80 of 100 test images are class c0 and the model answers c0 for everything: 0.80
    verdict = judge(metrics_of([[80, 0], [20, 0]]))
    assert verdict["level"] == "chance"
    assert "no better than always answering the most common class, 'c0' (0.80 of the 100 " \
           "test images)" in verdict["text"]
    # a little above the majority rate, but not clearly on 100 images: still chance
    assert judge(metrics_of([[80, 0], [18, 2]]))["level"] == "chance"
    # clearly above it, and closing more than half the gap from 0.80 to 1.0: ok
    ok = judge(metrics_of([[80, 0], [5, 15]]))
    assert ok["level"] == "ok" and "most common class, 'c0' (0.80)" in ok["text"]


def test_a_small_split_needs_a_clear_margin_the_binomial_test():
    # 3 classes, 12 test images: 8 right (0.67) happens by luck 1.9 % of the time, 9 (0.75) 0.4 %
    eight = judge(metrics_of([[4, 0, 0], [0, 3, 1], [1, 2, 1]]))
    assert eight["level"] == "chance"
    assert eight["text"].startswith("0.67 on 12 test images is not clearly above chance (0.33 "
                                    "for 3 classes): the model may not have learned")
    nine = judge(metrics_of([[4, 0, 0], [0, 3, 1], [0, 2, 2]]))
    assert nine["level"] != "chance"


def test_clearly_above_chance_but_low_is_weak():
    # 10 classes, 200 images, 0.30: far from luck, but only 22 % of the way from 0.10 to 1.0
    verdict = judge(metrics_of(diagonal(10, 20, 6)))
    assert verdict["level"] == "weak"
    assert verdict["text"] == ("0.30 test accuracy is above chance (0.10 for 10 classes) but "
                               f"weak: it closes only 22% of the gap to a perfect score; {ADVICE}.")
    # just past half of the gap: 0.56
    assert judge(metrics_of(diagonal(10, 50, 28)))["level"] == "ok"


def test_well_above_chance_is_ok():
    verdict = judge(metrics_of(diagonal(4, 25, 23)))
    assert verdict == {"level": "ok", "text": "0.92 test accuracy on 100 images is well above "
                                              "chance (0.25 for 4 classes)."}


def test_without_a_test_split_the_validation_accuracy_is_judged():
    verdict = judge(metrics_of(diagonal(2, 30, 15), split="val"))
    assert verdict["level"] == "chance" and "0.50 is chance level for 2 classes" in verdict["text"]
    verdict = judge(metrics_of(diagonal(2, 30, 29), split="val"))
    assert verdict["level"] == "ok" and "validation accuracy" in verdict["text"]


def test_an_empty_split_is_not_a_crash_and_says_what_to_do():
    verdict = judge(metrics_of([[0, 0], [0, 0]], split="val"))
    assert verdict == {"level": "weak", "text": "No validation images were evaluated, so nothing "
                       "shows whether the model learned: add images to the val split."}
    assert judge({"val_accuracy": 0.0, "per_class": {"a": {"support": 0}, "b": {"support": 0}}}
                 )["level"] == "weak"


def test_a_split_of_one_class_cannot_show_learning():
    verdict = judge(metrics_of([[5, 0], [0, 0]]))
    assert verdict["level"] == "chance" and "Every one of the 5 test images" in verdict["text"]


def test_without_a_matrix_per_class_support_or_the_class_count_is_used():
    per_class = {"a": {"precision": 0.5, "recall": 0.5, "support": 20},
                 "b": {"precision": 0.5, "recall": 0.5, "support": 20}}
    assert judge({"val_accuracy": 0.55, "per_class": per_class})["level"] == "chance"
    assert judge({"val_accuracy": 0.95, "per_class": per_class})["level"] == "ok"
    # no split size at all: the plain comparison with chance
    assert judge({"val_accuracy": 0.75}, num_classes=3)["level"] == "ok"
    assert judge({"val_accuracy": 0.30}, num_classes=3)["level"] == "chance"


@pytest.mark.parametrize("k, n, p", [(9, 12, 1 / 3), (8, 12, 1 / 3), (0, 5, 0.3), (5, 5, 0.3),
                                     (3, 10, 0.5), (17, 100, 0.1), (130, 1000, 0.1)])
def test_binomial_tail_is_the_exact_sum(k, n, p):
    exact = sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_a_large_split_is_judged_quickly():
    assert binomial_tail(60_000, 500_000, 0.1) == 0.0  # summed from the tail, not 500k terms


TRAINER_METRICS = {
    "val_accuracy": 0.81, "test_accuracy": 0.76, "best_epoch": 11, "epochs_run": 12,
    "stopped_by": "early_stopping",
    "per_class": {"cat": {"precision": 0.9, "recall": 0.6, "support": 20},
                  "dog": {"precision": 0.7, "recall": 0.92, "support": 25}},
    "confusion_matrix": {"split": "test", "labels": ["cat", "dog"], "matrix": [[12, 8], [2, 23]]},
    "history": [{"epoch": 1}],
}


def test_job_metrics_is_the_view_subset_with_f1_stop_reason_and_verdict():
    m = job_metrics(TRAINER_METRICS)
    assert set(m) == {"test_accuracy", "val_accuracy", "per_class", "epochs_run",
                      "stop_reason", "verdict"}
    assert m["stop_reason"] == "early_stopping"  # the trainer's old name, `stopped_by`
    assert m["per_class"]["cat"] == {"precision": 0.9, "recall": 0.6,
                                     "f1": pytest.approx(0.72), "support": 20}
    assert m["verdict"] == judge(TRAINER_METRICS)
    assert job_metrics(m) == m  # idempotent
    given = {"level": "weak", "text": "said by the trainer"}
    assert job_metrics({**TRAINER_METRICS, "verdict": given})["verdict"] == given
    no_test = job_metrics({"val_accuracy": 0.5})
    assert "test_accuracy" not in no_test and no_test["per_class"] == {}


def test_the_view_model_drops_an_absent_test_accuracy():
    view = JobMetricsView.model_validate(job_metrics({"val_accuracy": 0.9}, num_classes=2))
    assert "test_accuracy" not in view.model_dump()
    assert "test_accuracy" not in view.model_dump(mode="json")
    full = JobMetricsView.model_validate(job_metrics(TRAINER_METRICS))
    assert full.model_dump()["test_accuracy"] == 0.76


def test_summary_names_accuracy_epochs_weakest_class_and_verdict():
    text = summarize(job_metrics(TRAINER_METRICS))
    assert text.startswith("Test accuracy 0.76 (validation 0.81) after 12 epochs; training "
                           "stopped early: validation accuracy stopped improving.")
    assert "Weakest class: 'cat', 0.60 of its images recognised (precision 0.90)." in text
    assert text.endswith(judge(TRAINER_METRICS)["text"])
    assert [name for name, _ in worst_classes(job_metrics(TRAINER_METRICS)["per_class"])] == \
        ["cat", "dog"]
    assert job_summary("failed", "TrainingError: boom", None) == "Training failed: " \
                                                                  "TrainingError: boom."
    assert job_summary("training", None, None) is None


def test_a_notification_is_marked_by_its_verdict():
    def note(ok: bool, level: str | None) -> Notification:
        return Notification(project_id="p", project_name="cats", ok=ok, message="m",
                            details={"verdict": {"level": level, "text": "t"}} if level else {})

    assert note(True, "ok").headline == "✅ [cats] m"
    assert note(True, None).mark == "✅"
    assert note(True, "weak").mark == "⚠️" and note(True, "chance").mark == "⚠️"
    assert note(False, None).headline == "❌ [cats] m"
