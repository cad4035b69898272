"""One contract for every MetadataRepo: memory, SQLite, Postgres, Supabase (PostgREST on Postgres)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from training_agent.domain.errors import Conflict, DatasetNotFound, JobNotFound, ProjectNotFound
from training_agent.domain.models import (
    JOB_SAVED_FIELDS,
    STARTABLE,
    Dataset,
    JobState,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    claim_refusal,
    model_not_recorded,
    new_id,
    utcnow,
)
from training_agent.domain.ports import MetadataRepo


def project(repo: MetadataRepo, **fields) -> Project:  # type: ignore[no-untyped-def]
    return repo.add_project(Project(name=fields.pop("name", "cats"), **fields))


def test_project_round_trip(repo):
    stored = project(repo, training_config={"epochs": 3, "augment": {"flip": True}})
    assert repo.get_project(stored.id) == stored


@pytest.mark.parametrize("missing", [new_id(), "not-a-uuid"])
def test_missing_project_is_not_found(repo, missing):
    with pytest.raises(ProjectNotFound):
        repo.get_project(missing)
    with pytest.raises(ProjectNotFound):
        repo.set_project_status(missing, ProjectStatus.TRAINING)
    with pytest.raises(DatasetNotFound):
        repo.latest_dataset(missing)
    assert repo.latest_job(missing) is None
    assert repo.list_models(missing) == []
    assert repo.recent_logs(missing) == []


def test_set_project_status(repo):
    p = project(repo)
    repo.set_project_status(p.id, ProjectStatus.TRAINING_FAILED)
    assert repo.get_project(p.id).status is ProjectStatus.TRAINING_FAILED


def test_latest_dataset_is_the_newest_row(repo):
    p = project(repo)
    with pytest.raises(DatasetNotFound):
        repo.latest_dataset(p.id)
    old = Dataset(project_id=p.id, gcs_url="gs://b/old.zip", created_at=utcnow() - timedelta(1))
    new = Dataset(project_id=p.id, gcs_url="s3://b/new.zip", name="new", num_classes=3,
                  metadata={"source": "upload"})
    repo.add_dataset(new)
    repo.add_dataset(old)
    assert repo.latest_dataset(p.id) == new


def test_set_dataset_classes_records_what_intake_found(repo):
    p = project(repo)
    dataset = repo.add_dataset(Dataset(project_id=p.id, gcs_url="gs://b/d.zip"))
    assert repo.latest_dataset(p.id).num_classes is None
    repo.set_dataset_classes(dataset.id, 5)
    assert repo.latest_dataset(p.id) == dataset.model_copy(update={"num_classes": 5})
    with pytest.raises(DatasetNotFound):
        repo.set_dataset_classes(Dataset(project_id=p.id, gcs_url="x").id, 2)
    with pytest.raises(DatasetNotFound):
        repo.set_dataset_classes("not-a-uuid", 2)


def test_claim_job_inserts_the_job_and_marks_the_project_training(repo):
    p = project(repo, status=ProjectStatus.TRAINING_FAILED)
    job = TrainingJob(project_id=p.id, config={"epochs": 2})
    assert repo.claim_job(job, STARTABLE).id == job.id
    assert repo.get_job(job.id) == job
    assert repo.latest_job(p.id) == job
    assert repo.get_project(p.id).status is ProjectStatus.TRAINING
    assert [j.id for j in repo.active_jobs()] == [job.id]


def test_claim_job_refuses_a_second_active_job_even_with_force(repo):
    p = project(repo)
    first = repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    with pytest.raises(Conflict, match="active job") as refused:
        repo.claim_job(TrainingJob(project_id=p.id), None)
    # every store words the claim rule's refusal as the domain does
    assert str(refused.value) == str(claim_refusal(p.id, ProjectStatus.TRAINING, first.id, None))
    assert [j.id for j in repo.active_jobs()] == [first.id]


def test_claim_job_refuses_a_status_outside_allowed_unless_forced(repo):
    p = project(repo, status=ProjectStatus.PENDING_EVALUATION)
    with pytest.raises(Conflict, match="pending_evaluation") as refused:
        repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    assert str(refused.value) == str(
        claim_refusal(p.id, ProjectStatus.PENDING_EVALUATION, None, STARTABLE))
    assert repo.latest_job(p.id) is None
    repo.claim_job(TrainingJob(project_id=p.id), None)  # force
    assert repo.get_project(p.id).status is ProjectStatus.TRAINING


def test_claim_job_for_a_missing_project(repo):
    with pytest.raises(ProjectNotFound):
        repo.claim_job(TrainingJob(project_id=new_id()), STARTABLE)


def test_claim_next_pending_takes_the_oldest_free_project(repo):
    now = utcnow()
    busy = project(repo, name="busy", created_at=now - timedelta(minutes=3))
    repo.claim_job(TrainingJob(project_id=busy.id), None)
    repo.set_project_status(busy.id, ProjectStatus.PENDING_TRAINING)  # and yet it has a job
    project(repo, name="done", status=ProjectStatus.PENDING_EVALUATION,
            created_at=now - timedelta(minutes=2))
    newer = project(repo, name="newer", created_at=now)
    older = project(repo, name="older", created_at=now - timedelta(minutes=1),
                    training_config={"epochs": 1})

    job = repo.claim_next_pending("worker-a")
    assert job is not None
    assert (job.project_id, job.worker_id, job.state, job.config) == (
        older.id, "worker-a", JobState.QUEUED, {"epochs": 1})
    assert repo.get_job(job.id) == job
    assert repo.get_project(older.id).status is ProjectStatus.TRAINING
    nxt = repo.claim_next_pending("worker-b")
    assert nxt is not None and nxt.project_id == newer.id
    assert repo.claim_next_pending("worker-a") is None


def test_save_job_writes_only_while_active(repo):
    p = project(repo)
    job = repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    job.advance(JobState.DOWNLOADING)
    job.config = {"epochs": 3, "backbone": "resnet18"}  # a claimed job gets its resolved config
    job.progress = {"epoch": 1, "epochs": 3, "val_accuracy": 0.5}
    job.beat()
    assert repo.save_job(job) is True
    assert repo.get_job(job.id) == job

    job.fail("boom")
    assert repo.save_job(job) is True
    final = repo.get_job(job.id)
    assert (final.state, final.error) == (JobState.FAILED, "boom")
    assert repo.active_jobs() == []

    late = final.model_copy(update={"state": JobState.TRAINING, "error": None})
    assert repo.save_job(late) is False  # final is final
    assert repo.get_job(job.id) == final


def test_a_save_writes_the_fields_a_save_writes_and_nothing_else(repo):
    p = project(repo)
    claimed = repo.claim_job(TrainingJob(project_id=p.id, idempotency_key="k1",
                                         request_hash="h1"), STARTABLE)
    before = repo.get_job(claimed.id)
    changed = before.model_copy(deep=True, update={
        "idempotency_key": "k2", "request_hash": "h2",
        "queued_at": before.created_at + timedelta(hours=1),
        "created_at": before.created_at + timedelta(hours=1)})
    changed.begin()
    changed.advance(JobState.DOWNLOADING)
    changed.progress = {"epoch": 1}
    assert repo.save_job(changed)
    after = repo.get_job(claimed.id)
    assert {f: getattr(after, f) for f in ("idempotency_key", "request_hash", "queued_at",
                                           "created_at", "project_id")} == {
        f: getattr(before, f) for f in ("idempotency_key", "request_hash", "queued_at",
                                        "created_at", "project_id")}
    assert (after.state, after.progress, after.started_at) == (
        JobState.DOWNLOADING, {"epoch": 1}, changed.started_at)
    assert set(JOB_SAVED_FIELDS) >= {"state", "progress", "started_at"}


def test_save_unknown_job_is_not_found(repo):
    with pytest.raises(JobNotFound):
        repo.save_job(TrainingJob(project_id=project(repo).id))
    with pytest.raises(JobNotFound):
        repo.get_job(new_id())


def succeed(job: TrainingJob) -> TrainingJob:
    for state in (JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
                  JobState.UPLOADING, JobState.RECORDING, JobState.SUCCEEDED):
        job.advance(state)
    return job


def test_record_model_in_one_transaction(repo):
    p = project(repo)
    job = succeed(repo.claim_job(TrainingJob(project_id=p.id), STARTABLE))
    model = ModelRecord(project_id=p.id, name="cats_model", gcs_url="gs://b/models/m.pth",
                        accuracy=0.875, metadata={"epochs": 2, "class_names": ["a", "b"]})
    repo.record_model(model, job)
    assert repo.list_models(p.id) == [model]
    assert repo.get_project(p.id).status is ProjectStatus.PENDING_EVALUATION
    assert repo.get_job(job.id).state is JobState.SUCCEEDED


def test_record_model_for_a_job_no_longer_active_writes_nothing(repo):
    p = project(repo)
    job = repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    cancelled = job.model_copy(deep=True)
    cancelled.advance(JobState.CANCELLED)
    repo.save_job(cancelled)
    repo.set_project_status(p.id, ProjectStatus.TRAINING_CANCELLED)

    model = ModelRecord(project_id=p.id, name="cats_model", gcs_url="gs://b/m.pth")
    with pytest.raises(Conflict) as refused:
        repo.record_model(model, succeed(job))
    assert str(refused.value) == str(model_not_recorded(job.id))
    assert repo.list_models(p.id) == []
    assert repo.get_project(p.id).status is ProjectStatus.TRAINING_CANCELLED
    assert repo.get_job(job.id).state is JobState.CANCELLED


def test_logs_newest_first(repo):
    p = project(repo)
    for i in range(5):
        repo.add_log(LogEntry(project_id=p.id, level="info", message=f"step {i}",
                              details={"i": i}))
    repo.add_log(LogEntry(project_id=None, level="warning", message="no project"))
    logs = repo.recent_logs(p.id, limit=3)
    assert [(e.message, e.details) for e in logs] == [
        ("step 4", {"i": 4}), ("step 3", {"i": 3}), ("step 2", {"i": 2})]
    assert all(e.id is not None and e.agent == "training" for e in logs)
    assert logs[0].id > logs[1].id  # type: ignore[operator]


def test_ping(repo):
    repo.ping()


def race(workers: list[Callable[[], None]]) -> None:
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_two_agents_racing_for_50_projects_never_claim_one_twice(open_repo):
    agents = [open_repo(), open_repo()]
    ids = {agents[0].add_project(Project(name=f"p{i}")).id for i in range(50)}
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def claimer(repo: MetadataRepo, name: str) -> Callable[[], None]:
        def work() -> None:
            while (job := repo.claim_next_pending(name)) is not None:
                claimed[name].append(job.project_id)
        return work

    race([claimer(agents[0], "a"), claimer(agents[1], "b")])
    every = claimed["a"] + claimed["b"]
    assert sorted(every) == sorted(ids)  # each project claimed exactly once
    assert len(agents[0].active_jobs()) == 50
    assert all(agents[1].get_project(i).status is ProjectStatus.TRAINING for i in ids)


def test_concurrent_starts_of_one_project_have_one_winner(open_repo):
    agents = [open_repo() for _ in range(4)]
    p = agents[0].add_project(Project(name="contested"))
    wins: list[str] = []
    conflicts: list[Conflict] = []

    def start(repo: MetadataRepo) -> Callable[[], None]:
        def work() -> None:
            try:
                wins.append(repo.claim_job(TrainingJob(project_id=p.id), STARTABLE).id)
            except Conflict as exc:
                conflicts.append(exc)
        return work

    race([start(a) for a in agents])
    assert len(wins) == 1 and len(conflicts) == 3
    assert [j.id for j in agents[0].active_jobs()] == wins


def test_touch_job_beats_without_losing_progress_and_stops_once_final(repo):
    p = project(repo)
    job = repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    job.advance(JobState.DOWNLOADING)
    job.progress = {"epoch": 2, "epochs": 5}
    assert repo.save_job(job)
    assert repo.touch_job(job.id, "worker-7")
    stored = repo.get_job(job.id)
    assert stored.heartbeat_at is not None and stored.worker_id == "worker-7"
    assert stored.progress == {"epoch": 2, "epochs": 5} and stored.state is JobState.DOWNLOADING
    assert repo.touch_job(job.id)  # no owner given: the owner stays
    assert repo.get_job(job.id).worker_id == "worker-7"
    job.fail("boom")
    assert repo.save_job(job)
    assert repo.touch_job(job.id) is False
    with pytest.raises(JobNotFound):
        repo.touch_job(new_id())


def test_a_job_is_found_by_its_idempotency_key_and_a_key_makes_one_job(repo):
    p, q = project(repo), project(repo, name="dogs")
    job = repo.claim_job(TrainingJob(project_id=p.id, idempotency_key="k-1",
                                     request_hash="h-1"), STARTABLE)
    found = repo.job_for_idempotency_key("k-1")
    assert found is not None and found.id == job.id and found.request_hash == "h-1"
    assert repo.job_for_idempotency_key("k-2") is None
    job.fail("boom")
    assert repo.save_job(job)
    assert repo.get_job(job.id).idempotency_key == "k-1"  # saves keep the key
    with pytest.raises(Conflict):  # the key is taken even once its job is final
        repo.claim_job(TrainingJob(project_id=q.id, idempotency_key="k-1"), STARTABLE)
    assert repo.latest_job(q.id) is None
    assert repo.get_project(q.id).status is ProjectStatus.PENDING_TRAINING


def test_a_job_keeps_when_it_was_queued_and_when_a_worker_began_it(repo):
    p = project(repo)
    job = repo.claim_job(TrainingJob(project_id=p.id), STARTABLE)
    stored = repo.get_job(job.id)
    assert stored.queued_at is not None and stored.started_at is None
    assert abs((stored.queued_at - job.queued_at).total_seconds()) < 0.01
    job.begin()
    job.advance(JobState.DOWNLOADING)
    assert repo.save_job(job)
    started = repo.get_job(job.id).started_at
    assert started is not None and abs((started - job.started_at).total_seconds()) < 0.01
    assert started >= stored.queued_at
    later = repo.get_job(job.id)  # a save from a copy without started_at keeps it
    later.started_at = None
    later.progress = {"epoch": 1}
    assert repo.save_job(later)
    assert repo.get_job(job.id).started_at == started
    claimed = repo.claim_next_pending("watch@x")  # no project pending: none
    assert claimed is None
    q = project(repo, name="dogs")
    claimed = repo.claim_next_pending("watch@x")
    assert claimed is not None and claimed.project_id == q.id
    assert repo.get_job(claimed.id).queued_at is not None


def test_list_projects_pages_newest_first_with_each_latest_job(repo):
    now = utcnow()
    assert repo.list_projects(limit=10) == []
    old = project(repo, name="old", created_at=now - timedelta(minutes=3))
    mid = project(repo, name="mid", created_at=now - timedelta(minutes=2))
    new = project(repo, name="new", created_at=now - timedelta(minutes=1))
    first = repo.claim_job(TrainingJob(project_id=old.id, created_at=now - timedelta(seconds=50)),
                           None)
    first.fail("boom")
    assert repo.save_job(first)
    latest = repo.claim_job(TrainingJob(project_id=old.id, created_at=now - timedelta(seconds=9)),
                            None)
    mid_job = repo.claim_job(TrainingJob(project_id=mid.id), None)

    page = repo.list_projects(limit=2)
    assert [(p.name, j.id if j else None) for p, j in page] == [("new", None),
                                                                ("mid", mid_job.id)]
    assert page[1][0] == repo.get_project(mid.id)
    [(p, job)] = repo.list_projects(limit=2, offset=2)
    assert (p.id, job) == (old.id, repo.get_job(latest.id))
    assert repo.list_projects(limit=2, offset=3) == []
    assert [p.id for p, _ in repo.list_projects(limit=100)] == [new.id, mid.id, old.id]
