"""`training-agent backbones`: the recommended few by default, FILTER / --pretrained /
--provider, fast because the names come from the catalog, not from importing every model; MCP
list_backbones in pages (issue 12, item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from mcp import Client

from training_agent.adapters.trainers import catalog
from training_agent.adapters.trainers.lazy import LazyTrainer
from training_agent.adapters.trainers.registry import default_registry
from training_agent.entrypoints import cli
from training_agent.entrypoints.mcp_server import build_mcp_server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli.main, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def test_the_default_view_is_the_recommended_few_and_how_to_find_the_rest(home):
    lines = run("backbones").splitlines()
    assert lines[0].startswith("recommended backbones")
    assert lines[1].split() == ["size", "trainer", "backbone", "notes"]
    rows = [line.split()[:3] for line in lines[2:-1]]
    assert ["small", "torchvision", "resnet18"] in rows and len(rows) == 8
    assert {r[0] for r in rows} == {"small", "medium", "large"}
    total = sum(len(v) for v in default_registry().backbones().values())
    assert lines[-1].startswith(f"{total} backbones in all (timm ")
    assert "backbones FILTER" in lines[-1] and "--all" in lines[-1]


def test_filter_provider_and_pretrained(home):
    out = run("backbones", "resnet1", "--provider", "torchvision").splitlines()
    assert out[0] == "torchvision (4 of 80):"
    assert [line.split() for line in out[1:5]] == [
        ["resnet101", "pretrained"], ["resnet152", "pretrained"], ["resnet18", "pretrained"],
        ["wide_resnet101_2", "pretrained"]]
    assert out[-1] == "4 backbones matching 'resnet1'"
    listed = run("backbones", "vit_*", "--provider", "timm")
    with_weights = run("backbones", "vit_*", "--provider", "timm", "--pretrained")
    assert "no pretrained weights" in listed and "no pretrained weights" not in with_weights
    assert len(with_weights.splitlines()) < len(listed.splitlines())
    assert "torchvision" not in listed
    assert run("backbones", "no-such-net").strip().startswith("no backbone matching")
    result = CliRunner().invoke(cli.main, ["backbones", "--provider", "nope"])
    assert result.exit_code == 1
    assert "no trainer plugin 'nope'; installed: timm, torchvision" in result.stderr
    data = json.loads(run("backbones", "resnet18", "--json"))
    assert {"provider": "torchvision", "name": "resnet18", "pretrained": True, "size": None,
            "note": None} in data["backbones"]


def test_listing_imports_no_model_library(home):
    """The names come from the shipped catalog for the installed versions: 14 s before (torch,
    torchvision and timm imported), about 1 s now."""
    code = ("import sys, time; t = time.monotonic()\n"
            "from training_agent.entrypoints.cli import main\n"
            "try:\n    main(['backbones', 'resnet'])\nexcept SystemExit:\n    pass\n"
            "print('seconds', time.monotonic() - t)\n"
            "print('imported', sorted(m for m in ('torch', 'torchvision', 'timm') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "imported []" in out, out
    assert "backbones matching 'resnet'" in out


def test_the_catalog_is_computed_once_per_library_version_and_cached(tmp_path, monkeypatch):
    from training_agent.adapters.trainers import environment

    environment.configure(cache_home=tmp_path)  # XDG_CACHE_HOME, through the settings
    calls = []

    def compute():
        calls.append(1)
        return [("net_a", True), ("net_b", False)]

    for _ in range(2):
        assert catalog.cached_catalog("pytest", ["pytest"], compute) == [
            ("net_a", True), ("net_b", False)]
    assert len(calls) == 1  # the second call read the cache
    cached = json.loads((tmp_path / "training-agent" / "backbones-pytest.json").read_text())
    assert cached["pytest"]["versions"] == catalog.versions_of(["pytest"])
    monkeypatch.setattr(catalog, "versions_of", lambda names: {"pytest": "0.0"})  # upgraded
    catalog.cached_catalog("pytest", ["pytest"], compute)
    assert len(calls) == 2


@pytest.mark.slow
def test_the_shipped_catalog_is_what_the_libraries_say():
    """Run after a torchvision or timm upgrade: `python -m
    training_agent.adapters.trainers.catalog` rewrites the snapshot."""
    from training_agent.adapters.trainers import timm_provider, torchvision_provider

    snapshot = json.loads(catalog.SNAPSHOT.read_text())
    for name, module in (("torchvision", torchvision_provider), ("timm", timm_provider)):
        if snapshot[name]["versions"] != catalog.versions_of(module.DISTRIBUTIONS):
            pytest.skip(f"{name} is not the version the snapshot was made from")
        assert [tuple(e) for e in snapshot[name]["backbones"]] == module.compute_catalog()


def test_mcp_list_backbones_pages(home):
    from training_agent.entrypoints.container import build_container
    from training_agent.entrypoints.settings import Settings

    container = build_container(Settings())
    trainer = container.trainer()
    assert isinstance(trainer, LazyTrainer)  # the product's: real plugins, torch never built
    server = build_mcp_server(container.training_service(), None)  # type: ignore[arg-type]

    async def session() -> None:
        async with Client(server) as client:
            first = (await client.call_tool("list_backbones", {"filter": "resnet",
                                                               "limit": 5})).structured_content
            assert len(first["backbones"]) == 5 and first["next_offset"] == 5
            assert first["total"] > 5 and len(first["recommended"]) == 8
            rest = (await client.call_tool("list_backbones", {
                "filter": "resnet", "limit": 500, "offset": 5})).structured_content
            names = [(b["provider"], b["name"]) for b in first["backbones"] + rest["backbones"]]
            assert len(names) == first["total"] == len(set(names))
            assert rest["next_offset"] is None
            everything = (await client.call_tool("list_backbones", {})).structured_content
            assert len(everything["backbones"]) == 50  # paged by default
            bad = await client.call_tool("list_backbones", {"limit": 100000})
            assert bad.is_error and "limit must be an integer from 1 to 500" in \
                bad.content[0].text

    started = time.monotonic()
    anyio.run(session)
    assert time.monotonic() - started < 30
    assert trainer._trainer is None  # answered from the registry: no PyTorchTrainer, no torch
