"""The plugin registry: duplicates, unknown names, the environment filter, opting out, and a
third-party plugin distribution found through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.adapters.trainers.registry import InputSpec, PluginRegistry
from training_agent.domain.errors import InvalidConfig
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import make_dataset_zip


class FakeProvider:
    def __init__(self, name: str = "fake") -> None:
        self.name = name

    def list_backbones(self) -> list[str]:
        return ["tiny"]

    def build(self, backbone, num_classes, pretrained, image_size=None):
        raise NotImplementedError

    def input_spec(self, backbone, pretrained) -> InputSpec:
        return InputSpec()


def test_register_refuses_duplicates():
    registry = PluginRegistry(load_installed=False)
    registry.register(FakeProvider())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FakeProvider())


def test_register_refuses_what_is_not_a_provider():
    with pytest.raises(TypeError, match="not a backbone provider"):
        PluginRegistry(load_installed=False).register(object())


def test_unknown_names_say_what_exists():
    registry = PluginRegistry(load_installed=False)
    registry.register(FakeProvider("alpha"))
    with pytest.raises(InvalidConfig, match="unknown trainer 'beta'.*alpha"):
        registry.get("beta")
    with pytest.raises(InvalidConfig, match="unknown backbone 'huge' for trainer 'alpha'"):
        registry.check("alpha", "huge")
    assert registry.check("alpha", "tiny").name == "alpha"


def test_opting_out_loads_nothing_installed():
    assert PluginRegistry(load_installed=False).names() == []


def test_installed_plugins_load_lazily_from_entry_points():
    registry = PluginRegistry()
    assert registry._providers == {}  # nothing imported until first use
    assert {"torchvision", "timm"} <= set(registry.names())
    assert "resnet18" in registry.backbones()["torchvision"]
    assert "resnet10t" in registry.get("timm").list_backbones()


@pytest.mark.parametrize(("value", "expected"), [
    ("torchvision", ["torchvision"]), (" timm , torchvision ", ["timm", "torchvision"]), ("", []),
])
def test_environment_limits_which_plugins_load(monkeypatch, value, expected):
    """TRAINING_AGENT_PLUGINS reaches the registry through the settings and the container."""
    from training_agent.entrypoints.container import build_container
    from training_agent.entrypoints.settings import Settings

    monkeypatch.setenv("TRAINING_AGENT_PLUGINS", value)
    build_container(Settings())
    assert PluginRegistry().names() == expected


PLUGIN = '''
"""A third-party backbone provider: a two-layer CNN, needing nothing from the host package."""
import torch.nn as nn


class TinyNet(nn.Sequential):
    def __init__(self, num_classes):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


class Provider:
    name = "tinyplug"

    def list_backbones(self):
        return ["tinynet"]

    def build(self, backbone, num_classes, pretrained, image_size=None):
        return TinyNet(num_classes)

    def input_spec(self, backbone, pretrained):
        from training_agent.adapters.trainers.registry import InputSpec
        return InputSpec(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


provider = Provider()
'''


def install(site, name: str, source: str, monkeypatch) -> None:
    """Install distribution `name` (one module, one entry point) into a site directory."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [training_agent.trainers]
        {name} = {name}:provider
    """))
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A distribution `tinyplug` installed into a temporary site directory on sys.path."""
    install(tmp_path / "site", "tinyplug", PLUGIN, monkeypatch)
    return tmp_path / "site"


def in_memory_service(trainer):
    return TrainingService(repo=InMemoryMetadataRepo(), blobs=InMemoryBlobStore(),
                           trainer=trainer, notifier=InMemoryNotifier(),
                           model_store_url="mem://models", work_root=Path(tempfile.mkdtemp()))


def test_a_plugin_distribution_is_listed_and_a_job_trains_with_it(plugin_site, tmp_path):
    trainer = PyTorchTrainer(PluginRegistry())
    assert trainer.backbones()["tinyplug"] == ["tinynet"]
    assert "torchvision" in trainer.backbones()
    service = in_memory_service(trainer)
    data = make_dataset_zip(tmp_path / "shapes.zip")
    url = service.blobs.put("mem://data/shapes.zip", data.read_bytes())
    project = service.create_project("shapes", url, {
        "trainer": "tinyplug", "backbone": "tinynet", "pretrained": False, "epochs": 1,
        "image_size": 32})
    job = service.run(service.start(project.id).id)
    assert job.state.value == "succeeded", job.error
    [model] = service.repo.list_models(project.id)
    assert (model.metadata["trainer"], model.metadata["backbone"]) == ("tinyplug", "tinynet")
    manifest = json.loads(service.blobs.blobs[model.metadata["manifest_url"]])
    assert manifest["input"]["mean"] == [0.5, 0.5, 0.5]


def test_the_cli_lists_a_plugin_distribution(plugin_site, tmp_path):
    env = {**os.environ, "TRAINING_AGENT_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "training_agent", "backbones", "--all"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tinyplug (1 of 1):" in out.stdout and "  tinynet" in out.stdout
    assert "torchvision (80 of 80)" in out.stdout and "timm (" in out.stdout
    out = subprocess.run([sys.executable, "-m", "training_agent", "backbones"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert ", tinyplug 1, torchvision 80)" in out.stdout.splitlines()[-1]  # the default view


def test_an_unknown_plugin_is_refused_before_a_job_is_queued(tmp_path):
    service = in_memory_service(PyTorchTrainer(PluginRegistry(load_installed=False)))
    with pytest.raises(InvalidConfig, match="unknown trainer 'nope'"):
        service.create_project("x", "mem://x.zip", {"trainer": "nope"})


def test_a_broken_plugin_is_reported_by_name(tmp_path, monkeypatch):
    install(tmp_path / "site", "brokenplug", "raise ImportError('no such thing')\n", monkeypatch)
    registry = PluginRegistry()
    assert "brokenplug" not in registry.names() and "torchvision" in registry.names()
    with pytest.raises(InvalidConfig, match="failed to load.*no such thing"):
        registry.get("brokenplug")


def test_concurrent_first_callers_all_see_every_plugin():
    import threading

    from training_agent.adapters.trainers.registry import PluginRegistry

    registry = PluginRegistry()
    seen: list[list[str]] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        seen.append(registry.names())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all("torchvision" in names and "timm" in names for names in seen)
