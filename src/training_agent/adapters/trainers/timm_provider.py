"""The `timm` backbone provider: every model `timm.list_models()` knows.

Pretrained weights load through timm's own `pretrained=True` (the Hugging Face cache, or
torch.hub's cache for URL weights). Offline (`HF_HUB_OFFLINE=1`) with nothing cached, or with
no published weights for the model, the build fails with WeightsUnavailable at once."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from training_agent.domain.errors import InvalidConfig, WeightsUnavailable

from .catalog import Entries, cached_catalog
from .registry import InputSpec
from .weights import offline_requested

_HINT = "; set \"pretrained\": false to train from scratch"


class TimmProvider:
    name = "timm"

    def list_backbones(self) -> list[str]:
        return list(_names())

    def catalog(self) -> Entries:
        """Each backbone and whether timm publishes weights for it (no import when the
        catalog is cached for this timm version)."""
        return list(_catalog())

    def _cfg(self, backbone: str) -> Any:
        import timm.models

        if backbone not in set(_names()):
            raise InvalidConfig(f"unknown timm backbone {backbone!r}")
        return timm.models.get_pretrained_cfg(backbone)

    def input_spec(self, backbone: str, pretrained: bool) -> InputSpec:
        cfg = self._cfg(backbone)
        if cfg is None:
            return InputSpec()
        min_size = max(cfg.min_input_size[1:]) if cfg.min_input_size else 32
        return InputSpec(
            image_size=int(cfg.input_size[-1]), mean=tuple(cfg.mean), std=tuple(cfg.std),
            crop_pct=float(cfg.crop_pct), interpolation=str(cfg.interpolation),
            min_size=max(32, int(min_size)),
        )

    def build(
        self, backbone: str, num_classes: int, pretrained: bool, image_size: int | None = None
    ) -> Any:
        import timm

        cfg = self._cfg(backbone)
        kwargs: dict[str, Any] = {"num_classes": num_classes}
        if cfg is not None and cfg.fixed_input_size and image_size:
            kwargs["img_size"] = image_size
        if pretrained:
            self._check_weights(backbone, cfg)
            try:
                return timm.create_model(backbone, pretrained=True, **kwargs)
            except Exception as exc:
                raise WeightsUnavailable(
                    f"pretrained weights for timm {backbone} could not be loaded "
                    f"({type(exc).__name__}: {exc}){_HINT}"
                ) from None
        return timm.create_model(backbone, pretrained=False, **kwargs)

    @staticmethod
    def _check_weights(backbone: str, cfg: Any) -> None:
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise WeightsUnavailable(f"timm publishes no pretrained weights for {backbone}{_HINT}")
        if offline_requested() and not _cached(cfg):
            raise WeightsUnavailable(
                f"pretrained weights for timm {backbone} ({cfg.hf_hub_id or cfg.url}) are not "
                f"cached (expected {_expected(cfg)}) and the machine is offline{_HINT}"
            )


def _expected(cfg: Any) -> str:
    """Where the weights would be found: the file the offline error names."""
    if cfg.file:
        return f"the file {cfg.file}"
    if cfg.hf_hub_id:
        from huggingface_hub import constants

        repo = cfg.hf_hub_id.split("@")[0]
        name = cfg.hf_hub_filename or "model.safetensors"
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        return f"{name} of the Hugging Face repo {repo}, under {folder}"
    import torch

    return f"the file {Path(torch.hub.get_dir()) / 'checkpoints' / Path(cfg.url).name}"


def _cached(cfg: Any) -> bool:
    if cfg.file:
        return Path(cfg.file).exists()
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        names += ["model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"]
        return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).exists()


DISTRIBUTIONS = ("timm",)


def compute_catalog() -> Entries:
    import timm

    # pretrained names carry a tag (`resnet18.a1_in1k`): an architecture has weights if any tag
    pretrained = {name.split(".")[0] for name in timm.list_models(pretrained=True)}
    return [(name, name in pretrained) for name in timm.list_models()]


@cache
def _catalog() -> tuple[tuple[str, bool], ...]:
    return tuple(cached_catalog("timm", DISTRIBUTIONS, compute_catalog))


@cache
def _names() -> tuple[str, ...]:
    return tuple(name for name, _ in _catalog())


provider = TimmProvider()
