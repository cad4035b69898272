"""`batch_size: auto` (batching.py): the knob, the probe's choice, and the learning-rate rule."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers import batching
from training_agent.domain.config import TrainingConfig, describe_knobs, resolve_config
from training_agent.domain.errors import InvalidConfig

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_auto_is_the_default_and_an_int_is_kept():
    assert resolve_config({}).batch_size == "auto"
    assert resolve_config({"batch_size": 96}).batch_size == 96
    assert TrainingConfig.model_json_schema()["properties"]["batch_size"]["default"] == "auto"
    assert '- batch_size (integer >= 1, <= 4096 | "auto"; default "auto"): ' in describe_knobs()


@pytest.mark.parametrize("value", [True, "32", 32.0, 0, 4097, "max", None])
def test_batch_size_is_strict(value):
    with pytest.raises(InvalidConfig, match="batch_size"):
        resolve_config({"batch_size": value})


def test_range_message_names_the_key():
    with pytest.raises(InvalidConfig, match="batch_size must be between 1 and 4096, or 'auto'"):
        resolve_config({"batch_size": 0})


def test_candidates_are_powers_of_two_capped_by_512_and_the_training_set():
    assert batching.candidates(100_000) == [32, 64, 128, 256, 512]
    assert batching.candidates(300) == [32, 64, 128, 256]
    assert batching.candidates(256) == [32, 64, 128, 256]
    assert batching.candidates(20) == [16]
    assert batching.candidates(1) == [1]


def test_probe_keeps_the_largest_that_fits_and_stops_at_the_first_that_does_not():
    tried = []

    def fits(b):
        tried.append(b)
        if b >= 256:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return True

    best, trials = batching.probe(fits, [32, 64, 128, 256, 512])
    assert best == 128 and tried == [32, 64, 128, 256]
    assert trials[-1] == {"batch": 256, "fits": False}
    best, _ = batching.probe(lambda b: b * 1.0 <= 100, [32, 64, 128])
    assert best == 64
    best, _ = batching.probe(lambda b: False, [32, 64])
    assert best == 32  # nothing fits: the smallest, and training reports its own error


def test_resolve_is_32_on_cpu_exact_for_an_int_and_probed_per_rank_on_cuda():
    assert batching.resolve("auto", CPU, 10_000, 1, None) == (32, [])
    assert batching.resolve(48, CUDA, 10_000, 1, lambda b: True) == (48, [])
    seen = []

    def fits(per_rank):
        seen.append(per_rank)
        return per_rank <= 128

    batch, _ = batching.resolve("auto", CUDA, 10_000, 2, fits)
    assert batch == 256 and seen == [16, 32, 64, 128, 256]  # each rank takes half


def test_lr_rule_is_the_square_root_of_the_batch_ratio():
    assert batching.lr_for_batch(1e-3, 32) == pytest.approx(1e-3)
    assert batching.lr_for_batch(1e-3, 512) == pytest.approx(4e-3)
    assert batching.lr_for_batch(1e-3, 128) == pytest.approx(2e-3)
    assert batching.lr_for_batch(0.1, 512) == pytest.approx(0.4)  # SGD too: not 1.6
    assert batching.lr_for_batch(1e-3, 16) == pytest.approx(1e-3)  # under 32: kept


def test_the_scaled_lr_stops_at_the_recipes_ceiling():
    """From scratch AdamW's 2e-3 at batch 32 would be 8e-3 at 512: it stops at 4e-3, what batch
    512 ran at before; a fine-tuning rate (5e-4) stays under it, a set ceiling never lowers."""
    from training_agent.adapters.trainers.recipe import MAX_SCALED_LR

    cap = MAX_SCALED_LR["adamw"]
    assert batching.lr_for_batch(2e-3, 512, cap) == pytest.approx(4e-3)
    assert batching.lr_for_batch(2e-3, 128, cap) == pytest.approx(4e-3)
    assert batching.lr_for_batch(2e-3, 64, cap) == pytest.approx(2e-3 * 2 ** 0.5)
    assert batching.lr_for_batch(5e-4, 512, cap) == pytest.approx(2e-3)
    assert batching.lr_for_batch(0.1, 512, MAX_SCALED_LR["sgd"]) == pytest.approx(0.4)
    assert batching.lr_for_batch(8e-3, 32, cap) == pytest.approx(8e-3)  # never below the base


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory probe needs a CUDA GPU")
def test_probe_step_runs_on_cuda():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4)).cuda()
    fits = batching.step_fits(model, lambda m: torch.optim.AdamW(m.parameters()),
                              lambda: torch.autocast("cuda", dtype=torch.bfloat16), 32, 4,
                              torch.device("cuda"), channels_last=True)
    assert fits(32) is True


def test_on_cuda_a_small_dataset_caps_the_batch_for_16_steps_an_epoch():
    assert batching.data_cap(100_000) >= 512 and batching.data_cap(8192) == 512
    assert batching.data_cap(1000) == 32 and batching.data_cap(512) == 32
    assert batching.data_cap(511) == 16 and batching.data_cap(170) == 16
    assert batching.data_cap(10) == 10  # never above the training images
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return True

    assert batching.resolve("auto", CUDA, 170, 1, fits)[0] == 16 and tried == [16]
    tried.clear()
    assert batching.resolve("auto", CUDA, 2000, 1, fits)[0] == 64 and tried == [32, 64]
    tried.clear()
    assert batching.resolve("auto", CUDA, 20_000, 1, fits)[0] == 512
    # a CPU keeps 32, whatever the data
    assert batching.resolve("auto", CPU, 170, 1, None) == (32, [])
