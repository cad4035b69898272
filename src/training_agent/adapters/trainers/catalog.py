"""Backbone names without importing the model libraries.

Listing timm's and torchvision's models means importing them (and torch): about 10 s on a small
machine, for what is a fixed list for a given version of each library. A provider's list, with
whether each backbone has published weights, is kept by the versions of the distributions it
comes from: first in the snapshot shipped with this package (`backbone_catalog.json`, made from
the tested versions by `python -m training_agent.adapters.trainers.catalog`), then in a cache
file per user (`$XDG_CACHE_HOME/training-agent/`, else `~/.cache/training-agent/`); only when
neither matches the installed versions is the library imported, and the cache written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import environment

log = logging.getLogger(__name__)

SNAPSHOT = Path(__file__).with_name("backbone_catalog.json")
Entries = list[tuple[str, bool]]  # (backbone name, has published pretrained weights)


def versions_of(distributions: Iterable[str]) -> dict[str, str]:
    """The installed versions (from package metadata: nothing is imported)."""
    found = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def cache_dir() -> Path:
    """Our cache folder, under XDG_CACHE_HOME (settings) or ~/.cache."""
    base = environment.current().cache_home or Path.home() / ".cache"
    return Path(base) / "training-agent"


def _read(path: Path, provider: str, versions: dict[str, str]) -> Entries | None:
    try:
        data = json.loads(path.read_text())
        entry = data[provider] if provider in data else None
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("versions") != versions:
        return None
    return [(str(name), bool(pretrained)) for name, pretrained in entry["backbones"]]


def _write(path: Path, provider: str, versions: dict[str, str], entries: Entries) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump({provider: {"versions": versions, "backbones": entries}}, f)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError as exc:  # a read-only home: the next call computes again
        log.debug("backbone catalog cache not written to %s: %s", path, exc)


def cached_catalog(provider: str, distributions: Iterable[str],
                   compute: Callable[[], Entries]) -> Entries:
    """The provider's backbones and whether each has pretrained weights, for the installed
    versions of `distributions`; `compute()` (which imports the library) only on a miss."""
    versions = versions_of(distributions)
    for path in (SNAPSHOT, cache_dir() / f"backbones-{provider}.json"):
        found = _read(path, provider, versions)
        if found is not None:
            return found
    entries = compute()
    _write(cache_dir() / f"backbones-{provider}.json", provider, versions, entries)
    return entries


def write_snapshot() -> Path:
    """Regenerate the shipped snapshot from the installed libraries (after a version bump)."""
    from .timm_provider import DISTRIBUTIONS as TIMM
    from .timm_provider import compute_catalog as timm_catalog
    from .torchvision_provider import DISTRIBUTIONS as TV
    from .torchvision_provider import compute_catalog as tv_catalog

    data = {"torchvision": {"versions": versions_of(TV), "backbones": tv_catalog()},
            "timm": {"versions": versions_of(TIMM), "backbones": timm_catalog()}}
    SNAPSHOT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    return SNAPSHOT


if __name__ == "__main__":
    print(f"wrote {write_snapshot()}")
