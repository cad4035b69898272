"""What one training step costs by image side on this CPU: `python bench/step_cost.py`.

ResNet-18 from scratch, batch 32, forward + backward + fused AdamW step, on random inputs, at
each `--sides` (default 16-56 px), `--threads` threads (default 1, as bench/recipe_variants.py
runs); the sides are timed in turns, `--rounds` times, and the median is printed. On a CPU an
epoch's time is its steps', so this says what training at a smaller side would save
(bench/results/recipe_study.md, seventh look)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torchvision


def step_at(side: int, classes: int = 4, batch: int = 32):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=classes)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.randn(batch, 3, side, side), torch.randint(0, classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # the first one allocates
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="16,24,32,40,48,56")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {int(s): step_at(int(s)) for s in args.sides.split(",")}
    times: dict[int, list[float]] = {s: [] for s in steps}
    for _ in range(args.rounds):
        for side, step in steps.items():
            t = time.perf_counter()
            for _ in range(3):
                step()
            times[side].append((time.perf_counter() - t) / 3)
    print(f"ResNet-18, batch 32, {args.threads} thread(s): ms a step (median of {args.rounds})")
    for side, ts in times.items():
        print(f"  {side:4d} px  {1000 * statistics.median(ts):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
