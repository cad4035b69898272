"""The Supabase adapter against a real Supabase project, when one is named for tests.

It runs when SUPABASE_URL and SUPABASE_KEY (the service-role key) point at a project that has
the migrations applied (docs/cloud.md); TEST_SUPABASE_URL and TEST_SUPABASE_KEY, when set, name
another project for tests and win. tests/conftest.py copies SUPABASE_* to TEST_SUPABASE_* and
then clears SUPABASE_* for every other test, so no other test reaches the project. This test
only touches the rows it creates, and deletes them afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo
from training_agent.domain.errors import Conflict, JobNotFound, ProjectNotFound
from training_agent.domain.models import (
    STARTABLE,
    Dataset,
    JobState,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
)

URL = os.environ.get("TEST_SUPABASE_URL")
KEY = os.environ.get("TEST_SUPABASE_KEY")

pytestmark = pytest.mark.skipif(
    not (URL and KEY), reason="live Supabase test: set SUPABASE_URL and SUPABASE_KEY (or "
    "TEST_SUPABASE_URL and TEST_SUPABASE_KEY) to a project with supabase/migrations applied "
    "and its service-role key")


@pytest.fixture
def live():
    from supabase import create_client

    repo = SupabaseMetadataRepo(URL, KEY)  # type: ignore[arg-type]
    project = repo.add_project(Project(name=f"training-agent live test {uuid.uuid4().hex[:8]}"))
    yield repo, project
    admin = create_client(URL, KEY)  # type: ignore[arg-type]
    admin.table("agent_logs").delete().eq("project_id", project.id).execute()
    admin.table("projects").delete().eq("id", project.id).execute()  # cascades


def test_live_round_trip(live):
    repo, project = live
    repo.ping()
    assert repo.get_project(project.id) == project
    dataset = repo.add_dataset(Dataset(project_id=project.id, gcs_url="gs://b/d.zip"))
    assert repo.latest_dataset(project.id) == dataset

    job = repo.claim_job(TrainingJob(project_id=project.id), STARTABLE)
    with pytest.raises(Conflict):
        repo.claim_job(TrainingJob(project_id=project.id), None)
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING
    for state in (JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
                  JobState.UPLOADING, JobState.RECORDING):
        job.advance(state)
        assert repo.save_job(job)
    job.advance(JobState.SUCCEEDED)
    model = ModelRecord(project_id=project.id, name=f"{project.name}_model",
                        gcs_url="gs://b/m.pth", accuracy=0.5)
    repo.record_model(model, job)
    assert repo.list_models(project.id) == [model]
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    assert repo.save_job(job) is False

    repo.add_log(LogEntry(project_id=project.id, level="info", message="live test"))
    assert repo.recent_logs(project.id)[0].message == "live test"
    with pytest.raises(ProjectNotFound):
        repo.get_project(str(uuid.uuid4()))
    with pytest.raises(JobNotFound):
        repo.save_job(TrainingJob(project_id=project.id))
