"""The registry of backbone providers: entry points of group `training_agent.trainers`.

A provider is any object with a `name`, `list_backbones()`, `build(backbone, num_classes,
pretrained, image_size=None)` and `input_spec(backbone, pretrained)`; an optional `catalog()`
gives (name, has pretrained weights) pairs, and should not import the model library when it
can avoid it (see catalog.py). A distribution adds one
by declaring an entry point in the group that points at the provider object (or at a callable
that returns it); this package registers its own `torchvision` and `timm` providers that way.

Providers are loaded once, lazily, on first use. `TRAINING_AGENT_PLUGINS` (read by the settings,
handed on by the container: environment.py) limits which load:
unset loads all, a comma-separated list loads only those names, an empty value loads none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from training_agent.domain.errors import InvalidConfig
from training_agent.domain.ports import BackboneInfo

from . import environment

ENTRY_POINT_GROUP = "training_agent.trainers"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSpec:
    """How a backbone expects its input: the pretrained size and normalisation."""

    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    min_size: int = 32  # the smallest input the architecture accepts


@runtime_checkable
class BackboneProvider(Protocol):
    name: str

    def list_backbones(self) -> list[str]: ...

    def build(
        self, backbone: str, num_classes: int, pretrained: bool, image_size: int | None = None
    ) -> Any:
        """A `torch.nn.Module` with a fresh `num_classes` head; raises WeightsUnavailable when
        pretrained weights cannot be had."""

    def input_spec(self, backbone: str, pretrained: bool) -> InputSpec: ...


class PluginRegistry:
    """Backbone providers by name. `load_installed=False` gives an empty registry for tests."""

    def __init__(self, load_installed: bool = True, only: Iterable[str] | None = None) -> None:
        self._providers: dict[str, BackboneProvider] = {}
        self._broken: dict[str, str] = {}  # name -> why it failed to load
        self._loaded = not load_installed
        self._load_lock = threading.Lock()
        self._only = None if only is None else {n.strip() for n in only if n.strip()}

    def register(self, provider: BackboneProvider) -> BackboneProvider:
        if not isinstance(provider, BackboneProvider):
            raise TypeError(f"{provider!r} is not a backbone provider (name, list_backbones, "
                            "build, input_spec)")
        if provider.name in self._providers:
            raise ValueError(f"a backbone provider named {provider.name!r} is already registered")
        self._providers[provider.name] = provider
        return provider

    def names(self) -> list[str]:
        self._load()
        return sorted(self._providers)

    def get(self, name: str) -> BackboneProvider:
        self._load()
        if name in self._providers:
            return self._providers[name]
        if name in self._broken:
            raise InvalidConfig(f"trainer plugin {name!r} failed to load: {self._broken[name]}")
        raise InvalidConfig(
            f"unknown trainer {name!r}; installed plugins: {', '.join(self.names()) or 'none'}"
        )

    def backbones(self) -> dict[str, list[str]]:
        return {name: list(self.get(name).list_backbones()) for name in self.names()}

    def catalog(self) -> list[BackboneInfo]:
        """Every backbone of every provider, with whether it has pretrained weights where the
        provider says (an optional `catalog()` of (name, pretrained) pairs; None otherwise)."""
        found = []
        for name in self.names():
            provider = self.get(name)
            pairs = getattr(provider, "catalog", None)
            entries = pairs() if callable(pairs) else [(b, None) for b in
                                                       provider.list_backbones()]
            found += [BackboneInfo(provider=name, name=b, pretrained=p) for b, p in entries]
        return found

    def check(self, trainer: str, backbone: str) -> BackboneProvider:
        """The provider, or InvalidConfig naming the unknown trainer or backbone."""
        provider = self.get(trainer)
        known = provider.list_backbones()
        if backbone not in known:
            close = [b for b in known if backbone.split("_")[0] in b][:10]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise InvalidConfig(
                f"unknown backbone {backbone!r} for trainer {trainer!r} "
                f"({len(known)} available, see `training-agent backbones`){hint}"
            )
        return provider

    def _load(self) -> None:
        # Concurrent first callers (HTTP handlers run on threads) wait for one complete load;
        # the flag is set only once every plugin is in, so nobody sees a half-filled registry.
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            self._load_entry_points()
            self._loaded = True

    def _load_entry_points(self) -> None:
        only = self._only
        plugins = environment.current().plugins
        if only is None and plugins is not None:
            only = {n.strip() for n in plugins if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if (only is not None and ep.name not in only) or ep.name in self._providers:
                continue
            try:
                obj = ep.load()
                provider = obj if isinstance(obj, BackboneProvider) else obj()
                if provider.name != ep.name:
                    raise ValueError(f"entry point {ep.name!r} gives provider {provider.name!r}")
                self.register(provider)
            except Exception as exc:  # one broken plugin must not hide the others
                self._broken[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("trainer plugin %s failed to load: %s", ep.name, exc)


_default: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The process-wide registry of installed plugins."""
    global _default
    if _default is None:
        _default = PluginRegistry()
    return _default
