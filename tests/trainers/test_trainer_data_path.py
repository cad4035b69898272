"""The data path seen from a whole (tiny) training run: what the manifest records about the
decode, the resolved batch and learning rate, and the time outside decode and training."""

from __future__ import annotations

import json
import math

import pytest

from training_agent.adapters.trainers import batching
from training_agent.adapters.trainers.pytorch import PyTorchTrainer

from .conftest import Recorder, make_request


def manifest_of(result) -> dict:
    return json.loads(result.artifacts["manifest.json"].read_text())


def test_defaults_on_cpu_batch_32_and_the_decoder_in_the_manifest(tmp_path, tiny_splits):
    request = make_request(tmp_path, tiny_splits, epochs=1, batch_size="auto")
    request = request.model_copy(update={"timings": {"download_seconds": 0.25,
                                                     "index_seconds": 0.5}})
    result = PyTorchTrainer(threads=2).train(request, Recorder())
    m = manifest_of(result)
    # the job's steps before training and the process's start-up are in the timings
    timings = m["timings"]
    assert timings["download_seconds"] == 0.25 and timings["index_seconds"] == 0.5
    assert timings["process_start_to_trainer_seconds"] > 0
    assert {"decode_seconds", "model_seconds", "train_seconds", "evaluate_seconds",
            "write_seconds", "total_seconds"} <= set(timings)
    assert all(timings[k] >= 0 for k in ("model_seconds", "evaluate_seconds"))
    # the training's time in its parts: the steps, validation, and the rest of each epoch
    parts = ("steps_seconds", "validation_seconds", "epoch_end_seconds")
    assert timings["steps_seconds"] > 0 and timings["validation_seconds"] > 0
    assert sum(timings[k] for k in parts) == pytest.approx(timings["train_seconds"], abs=0.01)
    decoder = m["input"]["decoder"]
    assert decoder["name"] == "pil" and decoder["processes"] == 2
    assert decoder["function"] == m["input"]["preprocess_function"]
    assert sum(decoder["images"].values()) == sum(m["dataset"]["counts"].values())
    # batch auto on a CPU is 32; the recipe's lr is the one for 32
    assert m["config"]["batch_size"] == 32 and m["config"]["lr"] == pytest.approx(2e-3)
    assert m["runtime"]["batch"] == {"size": 32, "per_rank": 32, "auto": True, "probe": [],
                                     "lr_rule": "sqrt"}
    assert m["runtime"]["steps_per_epoch"] == 2  # 36 training images


@pytest.fixture
def probed_64(monkeypatch):
    """What the CUDA probe would resolve (it needs a GPU): 64, as if 128 did not fit."""
    trials = [{"batch": 32, "fits": True}, {"batch": 64, "fits": True},
              {"batch": 128, "fits": False}]
    monkeypatch.setattr(batching, "resolve", lambda *a: (64, trials))
    return trials


def test_a_probed_batch_scales_the_default_lr_by_the_square_root(tmp_path, tiny_splits,
                                                                 probed_64):
    result = PyTorchTrainer(threads=2).train(
        make_request(tmp_path, tiny_splits, epochs=1, batch_size="auto"), Recorder())
    m = manifest_of(result)
    assert m["config"]["batch_size"] == 64
    assert m["config"]["lr"] == pytest.approx(2e-3 * math.sqrt(2))
    assert m["runtime"]["batch"]["probe"] == probed_64
    assert m["runtime"]["steps_per_epoch"] == 1


def test_a_set_lr_or_a_set_batch_is_used_exactly(tmp_path, tiny_splits, probed_64):
    result = PyTorchTrainer(threads=2).train(
        make_request(tmp_path, tiny_splits, epochs=1, batch_size="auto", lr=0.002), Recorder())
    m = manifest_of(result)
    assert m["config"]["batch_size"] == 64 and m["config"]["lr"] == 0.002
    assert m["runtime"]["batch"]["lr_rule"] is None


def test_the_dataset_check_runs_while_training_and_never_holds_an_epoch_back(
        tmp_path, tiny_splits, monkeypatch):
    """A slow dataset check (on a large dataset) runs in its own thread while the epochs
    train: here it lasts until the first epoch has ended, which it could not if the loop
    waited for it; its summary line is said once, after that epoch, before the results; the
    report is complete."""
    import threading
    import time

    from training_agent.adapters.trainers import reporting

    real = reporting.dataset_check.check_dataset
    where: list[str] = []
    epoch_ended = threading.Event()

    def slow_check(*args, **kwargs):
        where.append(threading.current_thread().name)
        where.append("released" if epoch_ended.wait(timeout=120) else "timed out")
        time.sleep(0.2)
        return real(*args, **kwargs)

    class Sink(Recorder):
        def __call__(self, p):  # type: ignore[no-untyped-def]
            super().__call__(p)
            if p.step is None and p.message is None:
                epoch_ended.set()

    monkeypatch.setattr(reporting.dataset_check, "check_dataset", slow_check)
    sink = Sink()
    result = PyTorchTrainer(threads=2).train(make_request(tmp_path, tiny_splits, epochs=2),
                                             sink)
    assert where[0].startswith("dataset-check") and where[1] == "released"
    report = json.loads(result.artifacts["dataset_report.json"].read_text())
    said = report["summary"]
    kinds = ["step" if e.step else "summary" if e.message == said
             else "end" if e.step is None and e.message is None else "other"
             for e in sink.events]
    assert kinds.count("summary") == 1
    assert kinds.index("step") < kinds.index("end") < kinds.index("summary")
    assert manifest_of(result)["timings"]["dataset_check_seconds"] >= 0.2


def test_validation_and_test_go_through_the_final_model_once_for_metrics_and_report(
        tmp_path, tiny_splits, monkeypatch):
    """The evaluation's pass over validation and test (the metrics) gives the result
    analysis its predictions too: after training, each split goes through the handed-back
    model once, and the report's per-class figures are the metrics' own."""
    from training_agent.adapters.trainers import analysis, results

    passes: list[int] = []  # the number of images of each split passed through the model
    real = analysis.predict

    def counting(model, split, *args):  # type: ignore[no-untyped-def]
        passes.append(len(split))
        return real(model, split, *args)

    monkeypatch.setattr(analysis, "predict", counting)
    monkeypatch.setattr(results, "predict", counting)
    result = PyTorchTrainer(threads=2).train(
        make_request(tmp_path, tiny_splits, epochs=1), Recorder())
    counts = manifest_of(result)["dataset"]["counts"]  # train 36, val 12, test 12
    assert sorted(passes) in ([counts["val"], counts["test"]],  # a weak model: no label check
                              sorted([counts["val"], counts["test"], counts["train"]]))
    assert passes[:2] == [counts["val"], counts["test"]]  # val and test first, once each
    report = json.loads(result.artifacts["report.json"].read_text())
    assert report["per_class"] == result.metrics["per_class"]
