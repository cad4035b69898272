"""Near-duplicate search on images alike: when many pairs' hashes are close (flat or similar
pictures: 10 % of all pairs of 2,000 generated scenes), the thumbnail confirmation stays one
matrix product per block instead of gathering every candidate pair (which took 2-7 s on those
2,000 scenes, and would need about 7 GB for the 1,500 images below)."""

from __future__ import annotations

import time

import torch

from training_agent.adapters.trainers.dataset_check import close_pairs


def test_many_hash_candidates_are_confirmed_quickly_and_exactly():
    gen = torch.Generator().manual_seed(0)
    n = 1500
    bits = torch.zeros(n, 128, dtype=torch.bool)  # every pair a hash candidate
    thumbs = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=gen)
    thumbs[7] = thumbs[3]  # one true copy
    thumbs[1200] = (thumbs[40].int() // 2 + 60).to(torch.uint8)  # a darker copy
    t0 = time.monotonic()
    pairs = close_pairs(bits, 48, thumbs, 0.985)
    seconds = time.monotonic() - t0
    assert sorted(pairs) == [(3, 7, 0), (40, 1200, 0)]
    assert seconds < 5, f"{seconds:.1f} s for {n} images"


def test_few_candidates_are_confirmed_pair_by_pair_with_the_same_answer(monkeypatch):
    """Distinct hashes (few candidates): the pairs are correlated one by one, and the answer
    is the one the block's matrix product gives."""
    from training_agent.adapters.trainers import dataset_check

    gen = torch.Generator().manual_seed(1)
    n = 600
    bits = torch.rand(n, 128, generator=gen) < 0.5  # unrelated hashes: ~64 bits apart
    thumbs = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=gen)
    for a, b, flips in ((5, 9, 0), (100, 480, 20), (200, 201, 60)):
        bits[b] = bits[a]
        bits[b, :flips] = ~bits[b, :flips]  # 60 > 30: no candidate
        thumbs[b] = thumbs[a]
    thumbs[480, 0, 0, 0] ^= 1  # one level off: still a copy
    gathered = close_pairs(bits, 30, thumbs, 0.985)
    monkeypatch.setattr(dataset_check, "GATHER_SHARE", 10**12)  # never pair by pair
    product = close_pairs(bits, 30, thumbs, 0.985)
    assert sorted(gathered) == sorted(product) == [(5, 9, 0), (100, 480, 20)]
