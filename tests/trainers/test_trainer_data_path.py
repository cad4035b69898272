"""The data path seen from a whole (tiny) training run: what the manifest records about the
decode, the batch and the time outside decode and training."""

from __future__ import annotations

import json

from training_agent.adapters.trainers.pytorch import PyTorchTrainer

from .conftest import Recorder, make_request


def test_manifest_names_the_decoder_that_filled_the_cache(tmp_path, tiny_splits):
    result = PyTorchTrainer(threads=2).train(make_request(tmp_path, tiny_splits, epochs=1),
                                             Recorder())
    m = json.loads(result.artifacts["manifest.json"].read_text())
    decoder = m["input"]["decoder"]
    assert decoder["name"] == "pil" and decoder["processes"] == 2
    assert decoder["function"] == m["input"]["preprocess_function"]
    assert sum(decoder["images"].values()) == sum(m["dataset"]["counts"].values())
