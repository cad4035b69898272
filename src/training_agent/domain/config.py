"""The training config: defaults, validation, and the merge of project config and request overrides."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import InvalidConfig

INT_OR_AUTO_RANGES = {"image_size": (16, 1024), "epochs": (1, 1000)}


class TrainingConfig(BaseModel):
    """Every knob a job accepts. Unknown keys and out-of-range values are refused by name."""

    # strict: a boolean is not an int, a string is not a boolean or a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    trainer: str = "torchvision"
    backbone: str = "resnet18"
    pretrained: bool = True
    # "auto": train until validation accuracy stops improving (see `min_steps`, `max_epochs`)
    epochs: int | Literal["auto"] = "auto"
    max_epochs: int = Field(60, ge=1, le=1000)  # the ceiling of `epochs: auto`
    min_steps: int = Field(250, ge=0, le=1_000_000)  # `epochs: auto` never stops before this
    batch_size: int = Field(32, ge=1, le=4096)
    lr: float | None = Field(None, gt=0, le=10)  # None: the recipe's default for the optimizer
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = Field(0.05, ge=0, le=1)
    # None / "auto": the recipe's choice (0.1 and `standard` pretrained; 0 and `shift` from scratch)
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    augment: Literal["auto", "none", "shift", "light", "standard", "strong"] = "auto"
    image_size: int | Literal["auto"] = "auto"
    early_stopping_patience: int | None = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    max_minutes: float | None = Field(None, gt=0)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    warmup_epochs: float = Field(1.0, ge=0)
    compile: bool = False

    @field_validator("image_size", "epochs")
    @classmethod
    def _int_or_auto_range(cls, v: int | str, info: ValidationInfo) -> int | str:
        low, high = INT_OR_AUTO_RANGES[str(info.field_name)]
        if isinstance(v, int) and not low <= v <= high:
            raise ValueError(f"{info.field_name} must be between {low} and {high}, or 'auto'")
        return v

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "mps") and not v.startswith("cuda:"):
            raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")
        return v


def resolve_config(*layers: dict[str, Any] | None) -> TrainingConfig:
    """Merge config layers (later wins) and validate; the error names each bad key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, dict):
            raise InvalidConfig("config must be a JSON object")
        merged.update(layer)
    try:
        return TrainingConfig(**merged)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            # a union (int | "auto") reports one error per member: one line for the key
            key = str(err["loc"][0]) if err["loc"] else "config"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.setdefault(key, []).append(msg)
        text = "; ".join(f"{key}: {' or '.join(msgs)} (got {merged.get(key)!r})"
                         if len(msgs) > 1 else f"{key}: {msgs[0]}"
                         for key, msgs in problems.items())
        raise InvalidConfig("invalid training config: " + text) from None
