"""Where a fresh process's model set-up goes on a GPU (issue 10, item 5): the pieces of what
the trainer's `model_seconds` covers, each timed to its end (synchronised), in a process of
its own: importing torch and torchvision, the CUDA context, building ResNet-18, moving it,
then real training steps (bf16 autocast, channels_last, fused AdamW) at batch 32 and 512,
first and second of each shape.

    python bench/setup_probe.py [--warm] [--size 224]

`--warm` first runs what the trainer's warm-up now runs (`pytorch.warm_gpu_libraries`: one
tiny bf16 convolution forward and backward and a matmul), timed apart, so that the two runs
show what the warm-up takes off the first step. Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import time

T0 = time.monotonic()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    out: dict[str, float] = {}
    t = time.monotonic()
    import torch

    out["import_torch"] = time.monotonic() - t
    t = time.monotonic()
    import torchvision

    out["import_torchvision"] = time.monotonic() - t
    dev = torch.device("cuda")

    def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        t = time.monotonic()
        fn()
        torch.cuda.synchronize()
        out[name] = time.monotonic() - t

    timed("cuda_init", lambda: (torch.cuda.init(), torch.zeros(1, device=dev)))
    if args.warm:
        from training_agent.adapters.trainers.pytorch import warm_gpu_libraries

        timed("warm_up", warm_gpu_libraries)
    holder: dict[str, object] = {}
    timed("build", lambda: holder.update(m=torchvision.models.resnet18(num_classes=10)))
    model = holder["m"]
    timed("move", lambda: holder.update(m=model.to(dev).to(memory_format=torch.channels_last)))
    model = holder["m"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    for batch in (32, 32, 512, 512):
        x = torch.randn(batch, 3, args.size, args.size, device=dev).contiguous(
            memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=dev)
        key = f"b{batch}_{'second' if f'b{batch}_first_forward' in out else 'first'}"
        torch.cuda.synchronize()
        t = time.monotonic()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x).float(), y)
        torch.cuda.synchronize()
        out[f"{key}_forward"] = time.monotonic() - t
        t = time.monotonic()
        loss.backward()
        torch.cuda.synchronize()
        out[f"{key}_backward"] = time.monotonic() - t
        t = time.monotonic()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out[f"{key}_optimizer"] = time.monotonic() - t
    out["process_total"] = time.monotonic() - T0
    print(json.dumps({"warm": args.warm, "size": args.size, "torch": torch.__version__,
                      "seconds": {k: round(v, 3) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
