"""The actionable summary: the report's findings turned into the most confused pair, what in
the data inflates the score, and one next step."""

from __future__ import annotations

from training_agent.domain.verdict import job_metrics, summarize

CM = {"split": "test", "labels": ["a", "b", "c"], "matrix": [[9, 1, 0], [4, 6, 0], [0, 0, 10]]}


def metrics(**findings):
    base = {"test_accuracy": 25 / 30, "val_accuracy": 0.8, "epochs_run": 2,
            "stop_reason": "epochs", "confusion_matrix": CM,
            "per_class": {"a": {"precision": 0.69, "recall": 0.9, "f1": 0.78, "support": 10},
                          "b": {"precision": 0.86, "recall": 0.6, "f1": 0.72, "support": 10},
                          "c": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 10}}}
    return {**base, "findings": {"classes": 3, "chance": 0.333,
                                 "most_confused": {"true": "b", "predicted": "a", "count": 4},
                                 "label_issues": {"available": True, "count": 0},
                                 "train_images": 100, **findings}}


def test_a_leak_is_named_with_its_share_and_removing_it_is_the_next_step():
    text = summarize(job_metrics(metrics(test_leak={"images": 6, "of": 30, "share": 0.2})))
    assert "Most confused: 'b' taken for 'a' 4 times." in text
    assert "6 test images of 30 (20%) copy training images and inflate the test accuracy" in text
    assert "Next step: remove the 6 test images that copy training images" in text


def test_suspected_labels_and_the_weakest_class():
    text = summarize(job_metrics(metrics(label_issues={"available": True, "count": 3})))
    assert "3 images look mislabelled" in text
    assert "Next step: check the 3 suspected labels listed in report.json." in text
    text = summarize(job_metrics(metrics()))
    assert "Next step: add more training images of 'b', the weakest class." in text
    assert "Data:" not in text


def test_without_findings_the_summary_is_unchanged():
    plain = metrics()
    plain.pop("findings")
    assert "Next step" not in summarize(job_metrics(plain))


def test_a_class_missing_from_the_test_split_is_not_called_the_weakest():
    m = metrics(missing_from_test=["c"])
    m["per_class"]["c"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    text = summarize(job_metrics(m))
    assert "Weakest class: 'b'" in text and "class 'c' is never tested" in text
