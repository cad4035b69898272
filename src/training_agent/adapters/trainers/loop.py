"""One training run: prepare data and model, train epochs with validation, checkpoints and
early stopping, then test the best weights and write the artifacts."""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training_agent.domain.errors import DatasetInvalid, JobCancelled, TrainingError
from training_agent.domain.ports import EpochProgress, ProgressSink, TrainRequest, TrainResult
from training_agent.domain.verdict import judge

from . import artifacts, batching, checkpoints, environment, reporting
from .augment import BatchTransform
from .best_weights import last_is_as_good, standard_error
from .clock import start_timings
from .data import IGNORE, chunks_of, load_split
from .decoding import PIL_FUNCTION, make_decoder
from .distributed import DistContext
from .epoch_plan import EpochPlan
from .evaluation import accuracy, confusion, logits_of, per_class
from .images import auto_image_size
from .recipe import (
    make_optimizer,
    resolved_augment,
    resolved_label_smoothing,
    resolved_lr,
)
from .registry import PluginRegistry

MAX_LISTED_SKIPS = 20


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for, but no CUDA GPU is available")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


class TrainingRun:
    def __init__(self, registry: PluginRegistry, request: TrainRequest, progress: ProgressSink,
                 cache_bytes: int, threads: int,
                 on_ready: Callable[[TrainingRun], None] | None = None) -> None:
        self.req, self.cfg, self.sink = request, request.config, progress
        self.on_ready = on_ready  # called once data, model, optimizer and plan are set up
        self.registry, self.cache_bytes, self.threads = registry, cache_bytes, threads
        self.t_start = time.monotonic()
        self.timings: dict[str, float] = start_timings(request.timings)
        self._plan: EpochPlan | None = None  # made with the model (it needs the steps)
        self.history: list[dict[str, Any]] = []

    @property
    def plan(self) -> EpochPlan:
        """How many epochs run and why they stop (epoch_plan.py), once the model is set up."""
        assert self._plan is not None
        return self._plan

    # ---- setup ------------------------------------------------------------------------------
    def execute(self) -> TrainResult:
        cfg = self.cfg
        self.device = pick_device(cfg.device, environment.current().local_rank)
        self.dist = DistContext.from_env(self.device.type == "cuda")
        self.threads = max(1, self.threads // self.dist.local_world)
        torch.set_num_threads(self.threads)
        self.provider = self.registry.check(cfg.trainer, cfg.backbone)
        self.spec = self.provider.input_spec(cfg.backbone, cfg.pretrained)
        self.image_size = self._image_size()
        torch.manual_seed(cfg.seed)
        model = self.provider.build(cfg.backbone, len(self.req.splits.class_names),
                                    cfg.pretrained, self.image_size)
        self._prepare_data()
        self._prepare_model(model)
        self.writer = checkpoints.BackgroundWriter()
        try:
            self._train()
        finally:
            self.writer.wait()  # the last epoch's checkpoint is on disk, however training ended
        return self._finish()

    def _image_size(self) -> int:
        size = self.cfg.image_size
        if size == "auto":
            if self.cfg.pretrained:
                size = self.spec.image_size
            else:
                size = auto_image_size([p for p, _ in self.req.splits.train])
        return max(int(size), self.spec.min_size)

    def _prepare_data(self) -> None:
        t0 = time.monotonic()
        splits, dist = self.req.splits, self.dist
        per_image = 3 * self.image_size ** 2
        shards = {name: dist.shard(list(getattr(splits, name))) for name in ("train", "val", "test")}
        total = sum(len(s) for s in shards.values()) * per_image * dist.local_world
        self.cached = total <= self.cache_bytes
        self.gpu_cache = False
        cuda = self.device.type == "cuda"
        workers = 0 if self.cached else max(1, min(8, self.threads - (0 if cuda else 1)))
        if workers and not cuda:  # loader processes and intra-op threads share the cores
            torch.set_num_threads(max(1, self.threads - workers))
        if self.cached and cuda:  # the cache lives in GPU memory when it takes under a
            # quarter of what is free (the model and activations need the rest); decided
            # before the decode, so that nvJPEG's output stays there
            free, _ = torch.cuda.mem_get_info(self.device)
            mine = sum(len(s) for s in shards.values()) * per_image
            self.gpu_cache = mine < free // 4
        with make_decoder(self.device, self.image_size, self.threads,
                          keep_on_device=self.gpu_cache) as decoder:
            self.data = {name: load_split(items, self.image_size, self.threads, self.cached,
                                          workers, pin=cuda, decoder=decoder)
                         for name, items in shards.items()}
        self.decoder = {**decoder.describe(), "images": dict(sum(
            (Counter(getattr(d, "decoded_by", {})) for d in self.data.values()), Counter()))}
        if not self.cached:  # decoded on every pass by the loader's processes
            self.decoder = {"name": "pil", "function": PIL_FUNCTION,
                            "loader_processes": workers, "streamed": True}
        if self.cached and cuda:
            self._cache_on_gpu()
        self.timings["decode_seconds"] = round(time.monotonic() - t0, 3)
        self._check_skipped()
        reporting.start_dataset_check(self)  # dataset_report.json, while epoch 1 trains
        n = len(splits.class_names)
        self.augment = resolved_augment(self.cfg)
        self.transform = BatchTransform(self.augment, self.spec.mean, self.spec.std,
                                        self.device, channels_last=cuda)
        self.autocast = self._autocast()
        # with no validation images (tiny classes, nothing held out) the last epoch is kept
        self.has_val = int(dist.sum(torch.tensor(len(self.data["val"])))) > 0
        self.smallest_shard = int(dist.min(torch.tensor(len(self.data["train"]))))
        self.num_classes = n

    def _resolve_batch(self) -> None:
        """`batch_size` (global) -> `self.batch` per rank and `self.steps`; `auto` probes on
        CUDA (batching.py). Needs the model on its device."""
        cfg, dist = self.cfg, self.dist
        fits = None
        if cfg.batch_size == "auto" and self.device.type == "cuda":
            fits = batching.step_fits(self.model, lambda m: make_optimizer(m, cfg, 1e-3),
                                      self.autocast, self.image_size, self.num_classes,
                                      self.device, channels_last=True)
        train = int(dist.sum(torch.tensor(len(self.data["train"]))))
        batch, trials = batching.resolve(cfg.batch_size, self.device, train, dist.world, fits)
        batch = int(dist.min(torch.tensor(batch)))  # every rank the same
        self.global_batch, self.batch = batch, max(1, batch // dist.world)
        self.steps = max(1, math.ceil(self.smallest_shard / self.batch))
        self.batch_info = {"size": batch, "per_rank": self.batch, "auto": cfg.batch_size == "auto",
                           "probe": trials, "lr_rule": None}

    def _cache_on_gpu(self) -> None:
        """The decoded cache into GPU memory (a no-op for what nvJPEG left there), or into
        page-locked host memory when it would not fit (see _prepare_data)."""
        for d in self.data.values():
            d.to(self.device) if self.gpu_cache else d.pin()

    def _check_skipped(self) -> None:
        names = self.req.splits.class_names
        self.skipped = {k: len(d.skipped) for k, d in self.data.items()}
        counts = torch.zeros(len(names) + 3, dtype=torch.int64)
        counts[: len(names)] = torch.bincount(self.data["train"].labels.cpu().clamp(min=0),
                                              minlength=len(names))
        counts[len(names):] = torch.tensor([self.skipped[k] for k in ("train", "val", "test")])
        counts = self.dist.sum(counts)
        self.skipped = dict(zip(("train", "val", "test"), counts[len(names):].tolist(),
                                strict=True))
        empty = [names[i] for i in range(len(names)) if counts[i] == 0]
        if empty:
            raise DatasetInvalid(
                f"class {', '.join(repr(c) for c in empty)} has no readable training images "
                f"({self.skipped['train']} unreadable images skipped in train/)")
        if sum(self.skipped.values()):
            listed = [f"{k}/{e}" for k, d in self.data.items() for e in d.skipped]
            self._say(f"skipped {sum(self.skipped.values())} unreadable images "
                      f"(train {self.skipped['train']}, val {self.skipped['val']}, "
                      f"test {self.skipped['test']}): " + "; ".join(listed[:MAX_LISTED_SKIPS]))

    def _autocast(self) -> Any:
        precision = self.cfg.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        if precision == "fp32":
            return contextlib.nullcontext
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _prepare_model(self, model: torch.nn.Module) -> None:
        cfg = self.cfg
        model = model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._resolve_batch()
        self.lr = resolved_lr(cfg)
        if cfg.batch_size == "auto" and cfg.lr is None:  # the recipe's rate is for batch 32
            self.lr = batching.lr_for_batch(self.lr, self.global_batch)
            self.batch_info["lr_rule"] = batching.LR_RULE
        self.optimizer = make_optimizer(model, cfg, self.lr)
        self._plan = EpochPlan(cfg, self.steps, self.optimizer, self.has_val, self._say)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        # what the training step calls: the model, wrapped for DDP and/or compiled
        self.step_model: torch.nn.Module = model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.step_model = torch.compile(self.step_model)
        self.label_smoothing = resolved_label_smoothing(cfg)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing,
                                                   ignore_index=IGNORE)
        self.fingerprint = checkpoints.fingerprint(
            self._resolved_config(), self.req.dataset_sha256, self.req.splits.class_names)
        self.best: dict[str, Any] = {"accuracy": -1.0, "loss": math.inf, "epoch": 0,
                                     "state": None}
        self.improved_at = 0
        self.start_epoch = 1
        self._resume()
        if self.on_ready is not None:
            self.on_ready(self)

    def _resolved_config(self) -> dict[str, Any]:
        return {**self.cfg.model_dump(), "image_size": self.image_size, "lr": self.lr,
                "batch_size": self.global_batch,
                "precision": self.precision, "augment": self.augment,
                "label_smoothing": self.label_smoothing}

    # ---- checkpoints ------------------------------------------------------------------------
    def _resume(self) -> None:
        folder = self.req.checkpoint_dir
        state = None
        if self.dist.primary:
            try:
                state = checkpoints.load(folder)
                if state is not None and state["fingerprint"] != self.fingerprint:
                    self._say("found a checkpoint of another config or dataset; starting fresh")
                    checkpoints.clear(folder)
                    state = None
                elif state is not None:
                    self._check_fits(state)
            except checkpoints.Unreadable as exc:  # torn or foreign: never a reason to fail
                self._say(f"ignored an unusable checkpoint ({exc}); starting fresh")
                checkpoints.clear(folder)
                state = None
        state = self.dist.from_primary(state)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plan.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        self.history = list(state["history"])
        self.best = {"loss": math.inf, **state["best"]}
        self.start_epoch = int(state["epoch"]) + 1
        plan = state.get("plan") or {}
        self.plan.load_state_dict(plan)
        self.improved_at = int(plan.get("improved_at", self.best["epoch"]))
        self._say(f"resuming from checkpoint of epoch {state['epoch']}/{self.plan.end_epoch}")

    def _check_fits(self, state: dict[str, Any]) -> None:
        """Before anything is loaded: the checkpoint's tensors are exactly the model's."""
        own = self.model.state_dict()
        theirs = state["model"]
        bad = sorted(set(own) ^ set(theirs)) or [
            k for k in own if tuple(own[k].shape) != tuple(theirs[k].shape)]
        if bad or not 1 <= int(state["epoch"]) <= self.plan.max_epochs:
            raise checkpoints.Unreadable(
                f"{checkpoints.NAME} does not fit this model (epoch {state['epoch']}; "
                f"tensors {', '.join(bad[:5]) or 'ok'})")

    def _checkpoint(self, epoch: int) -> None:
        if not self.dist.primary:
            return
        self.writer.save(self.req.checkpoint_dir, {
            "fingerprint": self.fingerprint, "epoch": epoch, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.plan.schedule.state_dict(),
            "scaler": self.scaler.state_dict(), "rng_cpu": torch.get_rng_state(),
            "history": self.history, "best": self.best,
            "plan": {**self.plan.state_dict(), "improved_at": self.improved_at},
        })

    # ---- training ---------------------------------------------------------------------------
    def _train(self) -> None:
        budget = self.cfg.max_minutes * 60 if self.cfg.max_minutes else math.inf
        t_train = time.monotonic()
        epoch = self.start_epoch
        plan = self.plan
        while epoch <= plan.end_epoch:
            t0 = time.monotonic()
            done_steps = (epoch - self.start_epoch) * self.steps  # in this process
            loss, seen, timed_out = self._epoch(epoch, budget, t_train, done_steps)
            reporting.finish_dataset_check(self)  # made meanwhile (a no-op after epoch 1)
            self.dist.average_buffers(self.model)
            seconds = time.monotonic() - t0
            cm, val_loss = self._confusion("val")
            val_acc = accuracy(cm)
            ips = seen / seconds if seconds else 0.0
            self.history.append({
                "epoch": epoch, "train_loss": loss, "val_loss": val_loss, "val_accuracy": val_acc,
                "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
                "images_per_second": round(ips, 1)})
            self._keep_if_best(epoch, val_acc, val_loss)
            elapsed = time.monotonic() - self.t_start
            stop = plan.after_epoch(epoch, seconds, elapsed, budget, timed_out,
                                    self.best["accuracy"], self.improved_at)
            self._checkpoint(epoch)  # after the plan: a resumed run keeps it
            left = plan.end_epoch - epoch
            self._report(EpochProgress(
                epoch=epoch, epochs=plan.end_epoch, train_loss=loss, val_accuracy=val_acc,
                images_per_second=ips, eta_seconds=left * seconds))
            if stop:
                break
            epoch += 1
        self.epochs_run = len(self.history)
        self.timings["train_seconds"] = round(time.monotonic() - t_train, 3)

    def _keep_if_best(self, epoch: int, val_acc: float, val_loss: float) -> None:
        """Best weights by validation accuracy; a tie goes to the lower validation loss (small
        validation splits tie often). Without validation images the last epoch is kept."""
        best = self.best
        if val_acc > best["accuracy"]:
            self.improved_at = epoch  # patience counts epochs without a better accuracy
        better = val_acc > best["accuracy"] or (val_acc == best["accuracy"]
                                                and val_loss < best["loss"])
        if better or not self.has_val:
            self.best = {"accuracy": val_acc, "loss": val_loss, "epoch": epoch,
                         "state": {k: v.detach().clone().cpu()
                                   for k, v in self.model.state_dict().items()}}

    def _hand_back_weights(self) -> None:
        """Load the weights the job hands back (best_weights.py says which)."""
        best = self.best
        if best["state"] is None:
            return
        last = self.history[-1] if self.history else None
        n_val = int(self.dist.sum(torch.tensor(len(self.data["val"]))))
        if (last and self.has_val and self.plan.cooled() and last["epoch"] != best["epoch"]
                and last_is_as_good(best["accuracy"], last["val_accuracy"], n_val)):
            se = standard_error(best["accuracy"], n_val)
            self._say(f"keeping the last epoch's weights (epoch {last['epoch']}): its "
                      f"validation accuracy {last['val_accuracy']:.3f} is within one standard "
                      f"error ({se:.3f}, {n_val} images) of the best "
                      f"({best['accuracy']:.3f}, epoch {best['epoch']}), and the rate has "
                      "cooled down")
            self.best = {**best, "accuracy": last["val_accuracy"], "loss": last["val_loss"],
                         "epoch": last["epoch"], "state": None}
            return  # the model holds the last epoch's weights
        self.model.load_state_dict(best["state"])

    def _epoch(self, epoch: int, budget: float, t_train: float,
               done_steps: int) -> tuple[float, int, bool]:
        cfg, dist = self.cfg, self.dist
        self.step_model.train()
        base = cfg.seed * 1_000_003 + epoch
        torch.manual_seed(base * 7919 + dist.rank)  # dropout and the like
        order = torch.randperm(len(self.data["train"]),
                               generator=torch.Generator().manual_seed(base))
        aug_gen = torch.Generator(device=self.device).manual_seed(base * 31 + dist.rank)
        total = torch.zeros(2, dtype=torch.float64)
        t0 = time.monotonic()
        timed_out = False
        chunks = chunks_of(order, self.batch, self.steps)[: self.steps]
        for step, (images, labels) in enumerate(self.data["train"].batches(chunks), 1):
            x = self.transform.train(images, aug_gen)
            y = labels.to(self.device, non_blocking=True)
            with self.autocast():
                loss = self.criterion(logits_of(self.step_model(x)).float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.plan.schedule.step()
            n = int((y != IGNORE).sum())
            total += torch.tensor([float(loss.detach()) * n, n], dtype=torch.float64)
            if done_steps == 0 and step == 1:  # this process's first step
                self._first_step(time.monotonic() - t0)
            timed_out = self._step_report(epoch, step, total, t0, t_train, budget, done_steps)
            if timed_out:
                break
        total = dist.sum(total)
        return float(total[0] / max(1.0, float(total[1]))), int(total[1]), timed_out

    def _first_step(self, seconds: float) -> None:
        """The first step's time is in the timings; with `compile` it is mostly the
        compilation, and the job's log says so (docs/trainer.md: when compiling pays)."""
        self.timings["first_step_seconds"] = round(seconds, 3)
        if self.cfg.compile:
            self._say(f"torch.compile: the first step took {seconds:.1f} s, compilation "
                      "included; it pays only on long jobs (docs/trainer.md)")

    def _step_report(self, epoch: int, step: int, total: torch.Tensor, t0: float,
                     t_train: float, budget: float, done_steps: int) -> bool:
        """Report progress; returns True when the time budget is spent. Cancellation on rank 0
        reaches every rank through one small all-reduce."""
        now = time.monotonic()
        flags = torch.zeros(2)
        if self.dist.primary:
            per_step = (now - t_train) / (done_steps + step)
            try:
                self.sink(EpochProgress(
                    epoch=epoch, epochs=self.plan.end_epoch, step=step, steps=self.steps,
                    train_loss=float(total[0] / max(1.0, float(total[1]))),
                    images_per_second=float(total[1]) * self.dist.world / max(1e-9, now - t0),
                    eta_seconds=per_step * ((self.plan.end_epoch - epoch + 1) * self.steps
                                            - step)))
            except JobCancelled:
                flags[0] = 1
            flags[1] = float(now - self.t_start > budget)
        flags = self.dist.max(flags)
        if flags[0]:
            raise JobCancelled(self.req.job_id)
        return bool(flags[1])

    def _report(self, p: EpochProgress) -> None:
        cancelled = torch.zeros(1)
        if self.dist.primary:
            try:
                self.sink(p)
            except JobCancelled:
                cancelled[0] = 1
        if self.dist.max(cancelled)[0]:
            raise JobCancelled(self.req.job_id)

    def _say(self, message: str) -> None:
        if self.dist.primary:
            epochs = self._plan.end_epoch if self._plan is not None else 0
            self.sink(EpochProgress(epoch=len(self.history), epochs=epochs, message=message,
                                    step=0, steps=0))

    def _confusion(self, split: str) -> tuple[torch.Tensor, float]:
        return confusion(self.model if not self.cfg.compile else self.step_model, self.data[split],
                         self.transform.eval, self.num_classes, self.batch * 2, self.device,
                         self.autocast, self.dist.sum)

    # ---- results ----------------------------------------------------------------------------
    def _finish(self) -> TrainResult:
        req, names = self.req, self.req.splits.class_names
        reporting.finish_dataset_check(self)  # no epoch ran (a resumed, finished run)
        self._hand_back_weights()
        val_cm, _ = self._confusion("val")
        metrics: dict[str, Any] = {"val_accuracy": accuracy(val_cm),
                                   "best_epoch": self.best["epoch"],
                                   "epochs_run": len(self.history),
                                   "stop_reason": self.plan.stop_reason}
        cm, split = val_cm, "val"
        if req.splits.test:
            cm, _ = self._confusion("test")
            split = "test"
            metrics["test_accuracy"] = accuracy(cm)
        metrics["per_class"] = per_class(cm, names)
        metrics["confusion_matrix"] = {"split": split, "labels": names, "matrix": cm.tolist()}
        metrics["history"] = self.history
        metrics["verdict"] = judge(metrics)
        reporting.analyse(self, metrics)  # report.json's analysis; metrics["findings"]
        self.counts = {k: int(self.dist.sum(torch.tensor(len(d)))) for k, d in self.data.items()}
        result_acc = metrics.get("test_accuracy", metrics["val_accuracy"])
        common = {"accuracy": result_acc, "metrics": metrics, "epochs_run": len(self.history),
                  "backbone": self.cfg.backbone, "trainer": self.cfg.trainer,
                  "class_names": names}
        if not self.dist.primary:
            return TrainResult(**common, artifacts={}, weights_sha256="", primary=False)
        files = self._write(metrics, cm, split)
        checkpoints.clear(req.checkpoint_dir)
        return TrainResult(**common, artifacts=files,
                           weights_sha256=artifacts.sha256_file(files["model.pth"]))

    def _write(self, metrics: dict[str, Any], cm: torch.Tensor, split: str) -> dict[str, Path]:
        req, out = self.req, self.req.out_dir
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        files = artifacts.write_weights(self.model.state_dict(), out)
        files.update(artifacts.write_plots(self.history, cm.tolist(), req.splits.class_names,
                                           f"confusion matrix ({split})", out))
        reporting.write(self, metrics, files)  # dataset_report.json, report.json, report.html
        self.timings["write_seconds"] = round(time.monotonic() - t0, 3)
        self.timings["total_seconds"] = round(time.monotonic() - self.t_start, 3)
        manifest = {
            "format": "training-agent/model-manifest", "format_version": 1,
            "job_id": req.job_id, "project_id": req.project_id, "project_name": req.project_name,
            "trainer": self.cfg.trainer, "backbone": self.cfg.backbone,
            "pretrained": self.cfg.pretrained, "framework": "pytorch",
            "num_classes": len(req.splits.class_names), "class_names": req.splits.class_names,
            "input": {
                "image_size": self.image_size, "resize": "squash", "interpolation": "bilinear",
                "mean": list(self.spec.mean), "std": list(self.spec.std), "colour_mode": "RGB",
                "layout": "NCHW", "scale": "x / 255, then (x - mean) / std",
                "jpeg_draft": True, "exif_transpose": True, "alpha": "composited on white",
                "preprocess_function": "training_agent.adapters.trainers.images:load_image",
                "decoder": self.decoder,  # what filled the training cache (see decoding.py)
            },
            "metrics": metrics,
            "config": self._resolved_config(),
            "dataset": {
                "url": req.dataset_url, "sha256": req.dataset_sha256,
                "counts": self.counts,
                "skipped": self.skipped, "val_held_out": req.splits.val_held_out,
                "class_counts": dict(Counter(req.splits.class_names[lab] for _, lab in req.splits.train)),
            },
            "runtime": {"device": str(self.device), "world_size": self.dist.world,
                        "precision": self.precision, "threads": self.threads,
                        "cached": self.cached, "gpu_cache": self.gpu_cache,
                        "batch_per_rank": self.batch, "batch": self.batch_info,
                        "steps_per_epoch": self.steps, "compile": self.cfg.compile},
            "library_versions": artifacts.library_versions(),
            "timings": self.timings,
            **req.extra_manifest,
        }
        files["manifest.json"] = artifacts.write_manifest(manifest, dict(files), out)
        return files
