"""A Postgres outage as a job records its model (the artifacts uploaded), on a real Postgres
that the test stops after the last upload and starts again 3 s later (longer than the store's
wait for a connection, here 1 s): the worker waits the
outage out and the model is recorded once, with its artifacts kept, instead of the job failing
with "MetadataError" and its model being deleted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.e2e.pg_server import PgServer, pg_server
from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.postgres import PostgresMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.errors import MetadataError
from training_agent.domain.models import JobState
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import make_dataset_zip


class DatabaseGoesAway(LocalBlobStore):
    """Stops the database once the model's weights are uploaded; starts it `away` s later."""

    def __init__(self, pg: PgServer, away: float) -> None:
        self.pg, self.away, self.back_at = pg, away, 0.0
        self.failed: Exception | None = None  # the restart's error, if it had one
        self.restart: threading.Timer | None = None

    def upload(self, src: Path, url: str) -> str:
        done = super().upload(src, url)
        if url.endswith("/model.pth"):  # the last one (uploads go in name order)
            self.pg.stop()

            def back() -> None:
                # when the restart begins: the server takes connections before `pg_ctl -w`
                # returns, so the job may record its model before `start()` is done
                self.back_at = time.monotonic()
                try:
                    self.pg.start()
                except Exception as exc:
                    self.failed = exc
                    raise

            self.restart = threading.Timer(self.away, back)
            self.restart.start()
        return done


def test_a_model_uploaded_during_an_outage_is_recorded_once_the_database_returns(tmp_path):
    with pg_server() as pg:
        repo = PostgresMetadataRepo(pg.dsn, wait_timeout=1.0)
        blobs = DatabaseGoesAway(pg, away=3.0)
        store = tmp_path / "store"
        service = TrainingService(
            repo=repo, blobs=blobs, trainer=FakeTrainer(), notifier=InMemoryNotifier(),
            model_store_url=store.as_uri(), work_root=tmp_path / "work",
            record_retry_seconds=60)
        dataset = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 3})
        project = service.create_project("outage", dataset.as_uri(), {"epochs": 1})
        job = service.run(service.start(project.id).id)
        recorded_after = time.monotonic() - blobs.back_at
        repo.close()
        assert blobs.restart is not None
        blobs.restart.join(120)  # the restart ends before the server is torn down

        assert job.state is JobState.SUCCEEDED, job.error
        assert blobs.failed is None and blobs.back_at, f"the restart failed: {blobs.failed}"
        assert recorded_after < 15
        with psycopg.connect(pg.dsn) as conn:
            [(model_url, metadata)] = conn.execute(
                "SELECT gcs_url, metadata FROM models WHERE project_id = %s",
                (project.id,)).fetchall()
            [(status,)] = conn.execute("SELECT status FROM projects WHERE id = %s",
                                       (project.id,)).fetchall()
        assert metadata["job_id"] == job.id and status == "pending_evaluation"
        kept = sorted(p.name for p in (store / "models" / project.id / job.id).iterdir())
        assert kept == ["manifest.json", "model.pth"]
        assert model_url.endswith(f"/{job.id}/model.pth")


def test_the_postgres_store_says_when_it_cannot_be_reached(tmp_path):
    # what the worker's wait relies on: an outage is `unreachable`, a refusal is not
    import pytest

    with pg_server() as pg:
        repo = PostgresMetadataRepo(pg.dsn, wait_timeout=1.0)
        try:
            with pytest.raises(MetadataError) as refused:
                repo._db.one("SELECT * FROM no_such_table")
            assert not refused.value.unreachable
            pg.stop()
            with pytest.raises(MetadataError) as away:
                repo.ping()
            assert away.value.unreachable and "unreachable" in str(away.value)
        finally:
            repo.close()
