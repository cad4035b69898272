"""The real trainer with config overrides, on the quality benchmark's data, seed by seed.

`python bench/recipe_variants.py --families scenes,shapes --variants 'base={}'
'noaug={"augment": "none"}' --seeds 0,1,2 --jobs 2` trains our defaults (`pretrained: false`)
with each variant's overrides on each family of `bench/quality.py` (same generated data, same
15 % held out, test accuracy after every epoch), one run per process and one thread each, `--jobs`
at a time, appends every run to `--out` (JSON lines) and prints, per family and variant, the mean
over seeds of the handed-back test accuracy and of the curve. Where bench/quality.py compares
ours with the plain recipe, this compares versions of ours: the fifth look of
bench/results/recipe_study.md was measured with it."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402  (bench/quality.py: the data, our run, the mean curve)

OUT = Path(__file__).parent / "results" / "recipe_variants.jsonl"


def one_run(family: str, name: str, overrides: dict[str, Any], seed: int,
            per_class: tuple[int, int]) -> dict[str, Any]:
    """In this process (one thread): our defaults with `overrides`, one seed."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, splits = quality.family_data(family, work,
                                        {"train": per_class[0], "test": per_class[1]})
        r = quality.ours(work, splits, family, seed, overrides, threads=1)
    return {"family": family, "variant": name, "overrides": overrides, "seed": seed,
            "test": r["test"], "epochs": r["epochs"], "stop": r["stop"],
            "curve": [c["test"] for c in r["curve"]], "val": [c["val"] for c in r["curve"]],
            "seconds": [c["seconds"] for c in r["curve"]]}


def summary(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["family"], r["variant"])].append(r)
    lines = []
    for (family, name), runs in sorted(groups.items()):
        curve = [c["test"] for c in quality.mean_curve(
            [[{"test": t, "seconds": 0.0, "images": 0} for t in r["curve"]] for r in runs],
            [r["test"] for r in runs])]
        length = len(curve)
        at = ", ".join(f"@{e} {curve[e - 1]:.2f}" for e in (10, 20, 30, 40) if e <= length)
        tests = ", ".join(f"{r['test']:.2f}" for r in runs)
        epochs = ", ".join(str(r["epochs"]) for r in runs)
        final = statistics.mean(r["test"] for r in runs)
        lines.append(f"{family:9} {name:16} final {final:.3f} ({tests}; epochs {epochs}); "
                     f"mean curve {at}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="shapes,glyphs,textures,scenes")
    ap.add_argument("--variants", nargs="+", default=["base={}"],
                    help="NAME=JSON: the config keys each variant overrides")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--per-class", default="50,20")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a single run, in a child process
    args = ap.parse_args(argv)
    train, test = (int(v) for v in args.per_class.split(","))
    if args.one:
        family, name, overrides, seed = json.loads(args.one)
        print(json.dumps(one_run(family, name, overrides, seed, (train, test))))
        return 0
    variants = {}
    for v in args.variants:
        name, _, overrides = v.partition("=")
        variants[name] = json.loads(overrides or "{}")
    todo = [(f, n, o, int(s)) for s in args.seeds.split(",") for f in args.families.split(",")
            for n, o in variants.items()]

    def child(task: tuple[str, str, dict[str, Any], int]) -> dict[str, Any]:
        done = subprocess.run([sys.executable, __file__, "--per-class", args.per_class,
                               "--one", json.dumps(task)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{row['family']} {row['variant']} seed {row['seed']}: {row['test']:.3f} "
              f"({row['epochs']} epochs, {row['stop']})", flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(child, todo))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
