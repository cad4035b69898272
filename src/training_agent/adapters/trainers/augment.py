"""Augmentation and normalisation on whole uint8 batches, on the training device.

Presets (`augment` in the config; `auto` is `standard` when fine-tuning pretrained weights and
`shift` from scratch, see recipe.py):
  none      no augmentation
  shift     translation by a whole number of pixels, up to 1/8 of the side (the edges
            reflected), nothing else: keeps small objects whole in small images, never mirrors
            text or orientation, and never resamples, so training sees the very pixels
            validation does. With `augment: auto` from scratch its reach grows from none in
            the first epoch to full halfway through the first cycle (`shift_strength`,
            recipe.py's `augment_ramp_epochs`)
  shift-colour  shift, plus colour invariance: each image's RGB channels in a random order and
            half of the images inverted (255 - x). What `augment: auto` from scratch becomes
            when colours do not tell the classes apart (colour_check.py); growing with the
            shift's reach under the ramp
  light     horizontal flip, random resized crop with scale (0.6, 1)
  standard  horizontal flip, random resized crop with scale (0.3, 1), aspect (3/4, 4/3)
  strong    standard, plus brightness/contrast/saturation jitter (0.3) and random erasing
The crop, its aspect and the flip are one affine resampling per image (`affine_grid` +
`grid_sample`), and `shift`'s translation one indexed copy out of the padded batch: a batch costs
a single fused operation, not a Python loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "shift": {"translate": 0.125},
    "shift-colour": {"translate": 0.125, "colour": 1.0},
    "light": {"flip": 0.5, "scale_min": 0.6},
    "standard": {"flip": 0.5, "scale_min": 0.3},
    "strong": {"flip": 0.5, "scale_min": 0.25, "jitter": 0.3, "erase": 0.25},
}


def shift_strength(epoch: int, ramp_epochs: float) -> float:
    """The share of `shift`'s reach used in `epoch` (from 1): none in the first, growing
    linearly to the full reach after `ramp_epochs` (0: the full reach from the start)."""
    return 1.0 if ramp_epochs <= 0 else round(min(1.0, (epoch - 1) / ramp_epochs), 6)


@dataclass
class BatchTransform:
    preset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    channels_last: bool = False
    params: dict[str, float] = field(init=False)  # the preset's
    strength: float = 1.0  # the share of the translation's reach used (shift_strength)
    _scale: torch.Tensor = field(init=False)  # x * _scale + _shift normalises
    _shift: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.params = PRESETS[self.preset]
        # x/255 then (x - mean)/std, folded into one multiply-add
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """Validation preprocessing: normalisation only."""
        return self._layout(x.to(self.device, non_blocking=True).float() * self._scale + self._shift)

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float()
        p = self.params
        if p.get("translate"):
            x = self._translate(x, gen, p["translate"] * self.strength)
        elif "scale_min" in p:
            x = self._crop_flip(x, gen, p["flip"], p["scale_min"])
        if p.get("colour"):
            x = self._colour(x, gen, p["colour"] * self.strength)
        if p.get("jitter"):
            x = self._jitter(x, gen, p["jitter"])
        x = x * self._scale + self._shift
        if p.get("erase"):
            x = self._erase(x, gen, p["erase"])
        return self._layout(x)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _rand(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=gen, device=self.device)

    def _crop_flip(self, x: torch.Tensor, gen: torch.Generator, flip: float,
                   scale_min: float) -> torch.Tensor:
        n = x.shape[0]
        area = scale_min + (1 - scale_min) * self._rand(n, gen)
        log_r = math.log(4 / 3) * (2 * self._rand(n, gen) - 1)  # aspect 3/4 to 4/3
        ratio = torch.exp(log_r)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        # the crop's centre: anywhere inside the image, in [-1, 1] coordinates
        cx = (1 - w) * (2 * self._rand(n, gen) - 1)
        cy = (1 - h) * (2 * self._rand(n, gen) - 1)
        sign = torch.where(self._rand(n, gen) < flip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=self.device)
        theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    def _translate(self, x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
        """Each image moved by whole pixels, up to `share` of its side each way, the edges
        reflected: no interpolation, so no blur of fine texture or noise."""
        n, c, h, w = x.shape
        ky, kx = min(h - 1, round(share * h)), min(w - 1, round(share * w))
        if not (ky or kx):
            return x
        padded = F.pad(x, (kx, kx, ky, ky), mode="reflect")
        dy = torch.randint(0, 2 * ky + 1, (n, 1), generator=gen, device=self.device)
        dx = torch.randint(0, 2 * kx + 1, (n, 1), generator=gen, device=self.device)
        rows = (dy + torch.arange(h, device=self.device)).view(n, 1, h, 1)
        cols = (dx + torch.arange(w, device=self.device)).view(n, 1, 1, w)
        return padded[torch.arange(n, device=self.device).view(n, 1, 1, 1),
                      torch.arange(c, device=self.device).view(1, c, 1, 1), rows, cols]

    def use(self, preset: str) -> None:
        """Switch to another preset (`auto` from scratch: shift -> shift-colour)."""
        self.preset, self.params = preset, PRESETS[preset]

    def _colour(self, x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
        """With probability `share` an image's channels are put in a random order (any of the
        six, the unchanged one too), and with `share / 2` it is inverted (255 - x): the
        shapes stay, their colours and brightness order do not."""
        n = x.shape[0]
        order = torch.argsort(self._rand(n * 3, gen).view(n, 3), dim=1)
        order[self._rand(n, gen) >= share] = torch.arange(3, device=self.device)
        x = torch.gather(x, 1, order.view(n, 3, 1, 1).expand_as(x))
        invert = (self._rand(n, gen) < share / 2).view(n, 1, 1, 1)
        return torch.where(invert, 255.0 - x, x)

    def _jitter(self, x: torch.Tensor, gen: torch.Generator, s: float) -> torch.Tensor:
        n = x.shape[0]

        def factor() -> torch.Tensor:
            return (1 + s * (2 * self._rand(n, gen) - 1)).view(n, 1, 1, 1)

        x = x * factor()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor() + mean
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * factor() + grey
        return x.clamp(0, 255)

    def _erase(self, x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
        n, _, hgt, wid = x.shape
        side = 0.2 + 0.3 * self._rand(n, gen)
        y0 = self._rand(n, gen) * (1 - side)
        x0 = self._rand(n, gen) * (1 - side)
        ys = torch.linspace(0, 1, hgt, device=self.device).view(1, hgt, 1)
        xs = torch.linspace(0, 1, wid, device=self.device).view(1, 1, wid)
        box = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + side).view(n, 1, 1))
               & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + side).view(n, 1, 1)))
        box &= (self._rand(n, gen) < p).view(n, 1, 1)
        return x.masked_fill(box.unsqueeze(1), 0.0)
