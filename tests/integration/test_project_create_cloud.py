"""`project create` with a gs:// or s3:// dataset checks that the object exists (one metadata
call) against the GCS emulator and the moto server: a missing one is refused at once; one the
store will not show here (403) is accepted, and the project's log says it was not checked."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.api.conftest import settings_for
from tests.contract.conftest import AWS_TEST_ENV, BUCKET, GCS_DENIED, S3_DENIED
from tests.contract.servers import FaultProxy
from tests.fakes import fake_container
from training_agent.domain.errors import InvalidInput
from training_agent.testing.datasets import make_dataset_zip


@pytest.fixture(params=["gs", "s3"])
def cloud(request: pytest.FixtureRequest, gcs_proxy: FaultProxy, s3_proxy: FaultProxy,
          tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    proxy = gcs_proxy if request.param == "gs" else s3_proxy
    proxy.reset()
    container = fake_container(settings_for(tmp_path / "home", storage_emulator_host=gcs_proxy.url,
                                            s3_endpoint_url=s3_proxy.url))
    folder = f"{request.param}://{BUCKET}/datasets/{uuid.uuid4().hex}"
    denied = GCS_DENIED if request.param == "gs" else S3_DENIED
    return container, folder, proxy, denied


def test_a_missing_cloud_dataset_is_refused_at_create(cloud, tmp_path):
    container, folder, _, _ = cloud
    service = container.training_service()
    with pytest.raises(InvalidInput, match=f"dataset {folder}/missing.zip does not exist"):
        service.create_project("p", f"{folder}/missing.zip", {"epochs": 1})
    assert container.metadata_repo().active_jobs() == []

    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2})
    url = container.blob_store().upload(archive, f"{folder}/d.zip")
    project = service.create_project("p", url, {"epochs": 1})
    assert container.metadata_repo().latest_dataset(project.id).url == url


def test_a_dataset_the_store_will_not_show_here_is_accepted_with_a_warning(cloud):
    container, folder, proxy, (status, body, content_type) = cloud
    proxy.fail(status, body, content_type, times=None)
    project = container.training_service().create_project("p", f"{folder}/d.zip",
                                                           {"epochs": 1})
    [warning] = [e for e in container.metadata_repo().recent_logs(project.id)
                 if e.level == "warning"]
    assert "dataset not checked at create" in warning.message
    assert "permission denied" in warning.message.lower()
