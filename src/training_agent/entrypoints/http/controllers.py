"""Routes: thin calls into TrainingService and the JobRunner; errors go to the error table."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from training_agent.domain.models import JobState
from training_agent.domain.queries import MAX_PAGE
from training_agent.domain.service import MAX_IDEMPOTENCY_KEY_CHARS, TrainingService
from training_agent.domain.views import ProjectPageView, ProjectView, StatusView

from ..worker.runner import JobRunner
from .auth import SECURITY, require_api_key
from .health import Check, run_checks
from .schemas import CancelAccepted, ErrorBody, Health, StartAccepted, StartRequest

# a str, not a UUID, so a bad one gets the API's own 422 ("... is not a UUID"); the schema
# says `format: uuid` so that clients and schema-driven fuzzers send UUIDs
ProjectId = Annotated[str, PathParameter(format="uuid", description="the project's id (a UUID)")]
# checked by the service (a 422 naming the problem), documented here
IdempotencyKey = Annotated[str | None, HeaderParameter(
    name="Idempotency-Key", required=False,
    description="makes a retried start safe: the same key with the same project_id, config and "
                "force returns the job the first request made (202) instead of starting another "
                "or a 409; the key with a different request is a 422. 1 to "
                f"{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters, e.g. a UUID.")]


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    words = {400: "the body is not JSON", 401: "missing or wrong API key", 404: "no such project (or it has no dataset)",
             409: "the project's state does not allow it", 422: "invalid input",
             503: "the metadata store is unavailable"}
    return {c: ResponseSpec(ErrorBody, description=words[c], generate_examples=False)
            for c in codes}


class TrainingController(Controller):
    path = "/agents/training"
    tags = ["training"]
    guards = [require_api_key]
    security = SECURITY

    @post("/start", operation_id="startTraining", status_code=202, sync_to_thread=True,
          summary="Queue a training job for a project",
          responses=_errors(400, 401, 404, 409, 422))
    def start(self, request: Request, data: JSONBody[StartRequest],
              service: NamedDependency[TrainingService],
              runner: NamedDependency[JobRunner],
              idempotency_key: IdempotencyKey = None) -> StartAccepted:
        job = service.start(data.project_id, data.config, data.force, worker_id=runner.owner,
                            idempotency_key=idempotency_key)
        if job.state is JobState.QUEUED and job.worker_id == runner.owner:
            runner.submit(job.id)  # a replayed start's job queued by another agent stays there
        return StartAccepted(
            job_id=job.id, project_id=job.project_id, state=job.state.value,
            status_url=request.app.route_reverse("training_status", project_id=job.project_id),
        )

    @get("/status/{project_id:str}", name="training_status", operation_id="trainingStatus",
         sync_to_thread=True, summary="The project's status, its latest job and recent logs",
         responses=_errors(401, 404, 422))
    def status(self, project_id: ProjectId,
               service: NamedDependency[TrainingService]) -> StatusView:
        return service.status(project_id)

    @get("/projects", operation_id="listProjects", sync_to_thread=True,
         summary="Projects, newest first, with each one's last job state and accuracy (paged)",
         responses=_errors(401, 422))
    def projects(self, service: NamedDependency[TrainingService],
                 limit: Annotated[int, QueryParameter(
                     ge=1, le=MAX_PAGE, description="projects per page")] = 20,
                 offset: Annotated[int, QueryParameter(
                     ge=0, description="projects to skip: the previous page's `next_offset`")
                 ] = 0) -> ProjectPageView:
        return service.list_projects(limit, offset)

    @get("/projects/{project_id:str}", operation_id="showProject", sync_to_thread=True,
         summary="One project: status, config, dataset, latest job and model",
         responses=_errors(401, 404, 422))
    def project(self, project_id: ProjectId,
                service: NamedDependency[TrainingService]) -> ProjectView:
        return service.project(project_id)

    @post("/cancel/{project_id:str}", operation_id="cancelTraining", status_code=202,
          sync_to_thread=True, summary="Cancel the project's active job",
          responses=_errors(401, 404, 409, 422))
    def cancel(self, project_id: ProjectId,
               runner: NamedDependency[JobRunner]) -> CancelAccepted:
        job = runner.cancel(project_id)
        return CancelAccepted(job_id=job.id, project_id=job.project_id, state=job.state.value,
                              project_status="training_cancelled")


@get("/health", operation_id="health", tags=["health"],
     summary="Each dependency's check; 503 when one is down",
     responses={503: ResponseSpec(Health, description="a dependency is down",
                                  generate_examples=False)})
async def health(health_checks: NamedDependency[dict[str, Check]]) -> Response[Health]:
    report = await run_checks(health_checks)  # never waits for the server's worker threads
    return Response(report, status_code=200 if report.status == "ok" else 503)
