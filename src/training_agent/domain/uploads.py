"""A job's artifacts in the model store: uploaded after training, removed again when the job
fails or is cancelled before its model is recorded."""

from __future__ import annotations

from .journal import Part
from .models import JobState, Project, TrainingJob
from .ports import TrainResult
from .recording import model_recorded
from .urls import redact_url


class Uploads(Part):
    """Uploads a job's artifacts; discards them when no model row points at them."""

    def upload(self, job: TrainingJob, project: Project, result: TrainResult,
               uploaded: list[str]) -> dict[str, str]:
        """The `uploading` step: each artifact to `<model store>/models/<project>/<job>/`;
        returns their URLs by file name. `uploaded` gets each URL before its upload starts."""
        self.journal.step(job, JobState.UPLOADING)
        base = f"{self.setup.model_store_url.rstrip('/')}/models/{project.id}/{job.id}"
        urls: dict[str, str] = {}
        for name, path in sorted(result.artifacts.items()):
            uploaded.append(f"{base}/{name}")  # before the call: a failed upload may leave part
            urls[name] = self.setup.blobs.upload(path, f"{base}/{name}")
        self.journal.log(project.id, "info", "artifacts uploaded", job_id=job.id,
                         artifacts=[redact_url(u) for u in urls.values()])
        return urls

    def discard(self, job: TrainingJob, urls: list[str]) -> None:
        """Remove the artifacts a failed or cancelled job uploaded. Those that cannot be
        removed, or might belong to a recorded model (the store did not say), are listed in the
        project's log for removal by hand."""
        if not urls:
            return
        try:
            recorded = model_recorded(self.setup.repo, job)
        except Exception:  # the store cannot tell: a lost reply may have recorded the model
            recorded = None
        if recorded:
            return

        def removed(url: str) -> bool:
            try:
                self.setup.blobs.delete(url)
            except Exception:  # the store went away, or refuses deletes
                return False
            return True

        left = list(urls) if recorded is None else [u for u in urls if not removed(u)]
        shown = [redact_url(u) for u in urls]
        if left:
            self.journal.log(job.project_id, "warning", "artifacts uploaded before the job "
                             "failed are still in the model store: remove them by hand",
                             job_id=job.id, artifacts=[redact_url(u) for u in left])
        else:
            self.journal.log(job.project_id, "info", f"removed {len(urls)} artifacts uploaded "
                             "before the job failed", job_id=job.id, artifacts=shown)
