"""An agent on a temporary home with the FakeTrainer; jobs still run in real worker processes."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.fakes import fake_container
from training_agent.entrypoints.container import Container
from training_agent.entrypoints.http import create_app
from training_agent.entrypoints.settings import Settings
from training_agent.entrypoints.worker.runner import JobRunner
from training_agent.testing.datasets import make_dataset_zip

FAST = {"epochs": 2, "pretrained": False, "image_size": 32, "batch_size": 4}


@dataclass
class Agent:
    settings: Settings
    container: Container
    runner: JobRunner
    client: TestClient
    dataset_url: str

    @property
    def service(self):
        return self.container.training_service()

    def project(self, name: str = "shapes", config: dict[str, Any] | None = None) -> str:
        return self.service.create_project(name, self.dataset_url, FAST | (config or {})).id

    def status(self, project_id: str) -> dict[str, Any]:
        r = self.client.get(f"/agents/training/status/{project_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, project_id: str, done: Callable[[dict[str, Any]], bool],
                 timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.status(project_id)
            if done(view):
                return view
            assert time.monotonic() < deadline, f"gave up waiting; last status {view}"
            time.sleep(0.1)

    def wait_status(self, project_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_for(project_id, lambda v: v["project_status"] == status, timeout)

    headers: dict[str, str] | None = None


def settings_for(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"training_agent_home": home, "mcp_api_key": None,
                              "notify_webhook_url": None, "database_url": None,
                              "supabase_url": None, "model_store_url": None,
                              "gcp_bucket_name": None, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset_zip(tmp_path_factory.mktemp("data") / "shapes.zip", classes=2, size=32,
                            per_class={"train": 3, "val": 1})


@pytest.fixture
def make_agent(tmp_path: Path, tiny_zip: Path) -> Iterator[Callable[..., Agent]]:
    """make_agent(api_key=None, max_concurrent=1, **fake_trainer_options) -> a started Agent."""
    started: list[TestClient] = []

    def make(api_key: str | None = None, max_concurrent: int = 1, home: Path | None = None,
             stale_after: float = 120.0, standby: bool = False,
             **trainer_options: Any) -> Agent:
        settings = settings_for(home or tmp_path / "home", mcp_api_key=api_key,
                                max_concurrent_jobs=max_concurrent)
        container = fake_container(settings, **trainer_options)
        runner = JobRunner(
            container.training_service(),
            functools.partial(fake_container, settings, **trainer_options),
            owner="serve@test", max_concurrent=max_concurrent, heartbeat_seconds=0.5,
            stale_after=stale_after, term_grace=3.0, poll_seconds=0.05, standby=standby,
        )
        client = TestClient(create_app(container, runner, api_key=api_key))
        client.__enter__()
        started.append(client)
        url = container.training_service().store_dataset(tiny_zip)
        headers = {"X-API-Key": api_key} if api_key else None
        return Agent(settings, container, runner, client, url, headers)

    yield make
    for client in reversed(started):
        client.__exit__(None, None, None)
