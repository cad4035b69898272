"""The training config: defaults, validation, and the merge of project config and request overrides."""

from __future__ import annotations

import json
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

INT_OR_AUTO_RANGES = {"image_size": (16, 1024), "epochs": (1, 1000), "batch_size": (1, 4096)}


def _document_ranges(schema: dict[str, Any]) -> None:
    """The int-or-'auto' knobs check their range in a validator (one message for the key):
    the schema gives the integer branch the same minimum and maximum."""
    for key, (low, high) in INT_OR_AUTO_RANGES.items():
        for branch in schema["properties"][key].get("anyOf", []):
            if branch.get("type") == "integer":
                branch.update(minimum=low, maximum=high)


class TrainingConfig(BaseModel):
    """Every knob a training job accepts, with its default. Unknown keys and out-of-range
    values are refused, naming the key. A project's config and a start's `config` give any
    subset; the start's keys win."""

    # strict: a boolean is not an int, a string is not a boolean or a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              title="TrainingConfig", json_schema_extra=_document_ranges)

    trainer: str = Field("torchvision", description=(
        "the backbone provider (trainer plugin): `torchvision`, `timm` or an installed "
        "third-party plugin; `training-agent backbones` lists them"))
    backbone: str = Field("resnet18", description=(
        "the model architecture, a name the trainer offers (`training-agent backbones`)"))
    pretrained: bool = Field(True, description=(
        "start from the backbone's published weights; when they cannot be had the job fails "
        "saying so (false trains from scratch)"))
    epochs: int | Literal["auto"] = Field("auto", description=(
        "`auto`: train until validation accuracy stops improving (between `min_steps` and "
        "`max_epochs`); or an exact number of epochs, 1 to 1000"))
    max_epochs: int = Field(60, ge=1, le=1000, description="the ceiling of `epochs: auto`")
    min_steps: int = Field(250, ge=0, le=1_000_000, description=(
        "`epochs: auto` never stops before this many optimizer steps"))
    batch_size: int | Literal["auto"] = Field("auto", description=(
        "images per optimizer step (the global batch, split across processes when "
        "distributed), 1 to 4096; `auto`: on CUDA the largest power of two from 32 to 512 (and "
        "not above the training images) whose step fits comfortably in GPU memory, found by a "
        "short probe, with the default learning rate scaled from batch 32 by the square root "
        "of the ratio; 32 on a CPU"))
    lr: float | None = Field(None, gt=0, le=10, description=(
        "learning rate; null: the recipe's default (2e-3 for AdamW/Adam, 5e-4 when pretrained; "
        "0.1 for SGD, 0.02 when pretrained), set for batch 32 and scaled with an `auto` batch "
        "(at most to 4e-3 for AdamW/Adam, 0.4 for SGD)"))
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description=(
        "the optimizer (`sgd`: momentum 0.9, Nesterov); weight decay applies to weights only"))
    weight_decay: float = Field(0.05, ge=0, le=1, description="decoupled weight decay")
    label_smoothing: float | None = Field(None, ge=0, lt=1, description=(
        "label smoothing of the loss; null: the recipe's choice (0.1 pretrained, 0 from "
        "scratch)"))
    augment: Literal["auto", "none", "shift", "shift-colour", "light", "standard",
                     "strong"] = Field("auto", description=(
        "augmentation preset; `auto`: `standard` (random resized crop, flip) when "
        "pretrained, `shift` (translation by whole pixels, no flip) from scratch, its reach "
        "growing from none over the first half of the first cycle, and `shift-colour` "
        "(channels shuffled, half the images inverted) when the training images' colours do "
        "not tell the classes apart"))
    image_size: int | Literal["auto"] = Field("auto", description=(
        "input side in pixels, 16 to 1024; `auto`: the weights' input size when pretrained, "
        "else the training images' median shorter side clamped to [32, 224]"))
    early_stopping_patience: int | None = Field(5, ge=1, description=(
        "epochs without a better validation accuracy before stopping (integer `epochs`) or "
        "cooling down (`auto`); null: never"))
    seed: int = Field(0, ge=0, description=(
        "seeds model init, shuffling and augmentation: the same seed gives the same weights"))
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description=(
        "numeric precision; `auto`: bf16 autocast on CUDA, fp32 on CPU"))
    device: str = Field("auto", description=(
        "`auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:N` or `mps`"),
        json_schema_extra={"pattern": "^(auto|cpu|cuda|mps|cuda:.*)$"})
    max_minutes: float | None = Field(None, gt=0, description=(
        "time budget of the training in minutes; stops mid-epoch once spent, after "
        "validating; null: none"))
    val_fraction: float = Field(0.15, gt=0, lt=1, description=(
        "the stratified share of train/ held out for validation when the zip has no val/"))
    warmup_epochs: float | None = Field(None, ge=0, description=(
        "linear warmup of the learning rate from lr/100 over this many epochs; null: the "
        "recipe's choice (2 from scratch, 1 when pretrained)"))
    compile: bool = Field(False, description="`torch.compile` the model")

    @field_validator("image_size", "epochs", "batch_size")
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


def config_json_schema() -> dict[str, Any]:
    """The training config's JSON schema (2020-12): every knob with its type, range, default
    and meaning. `training-agent config --schema` prints it; the OpenAPI document and the MCP
    tools carry it."""
    return TrainingConfig.model_json_schema()


def describe_knobs() -> str:
    """One line per knob (name, type, default, meaning), for tool descriptions and --help."""
    lines = []
    for name, prop in config_json_schema()["properties"].items():
        lines.append(f"- {name} ({_type_of(prop)}; default {json.dumps(prop.get('default'))}): "
                     f"{prop.get('description', '')}")
    return "\n".join(lines)


def _type_of(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(_type_of(b) for b in prop["anyOf"])
    if "const" in prop:
        return json.dumps(prop["const"])
    bounds = [f"{sign} {prop[key]}" for key, sign in (
        ("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
        ("exclusiveMaximum", "<")) if key in prop]
    return str(prop.get("type", "any")) + (f" {', '.join(bounds)}" if bounds else "")


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
