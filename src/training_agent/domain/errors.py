"""Domain errors: each names what went wrong in the user's words."""

from __future__ import annotations


class TrainingAgentError(Exception):
    """Base of every error the domain raises on purpose."""


class NotFound(TrainingAgentError):
    """A project, dataset or job that does not exist."""


class ProjectNotFound(NotFound):
    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} not found")
        self.project_id = project_id


class DatasetNotFound(NotFound):
    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} has no dataset")
        self.project_id = project_id


class JobNotFound(NotFound):
    def __init__(self, what: str) -> None:
        super().__init__(f"no training job for {what}")


class Conflict(TrainingAgentError):
    """The request clashes with the current state (an active job, a status that may not start)."""


class InvalidInput(TrainingAgentError):
    """A request or config that fails validation; the message names the field."""


class InvalidConfig(InvalidInput):
    pass


class DatasetInvalid(TrainingAgentError):
    """The dataset archive or its contents are unusable; the message names the offending member."""


class DiskFull(TrainingAgentError):
    """The local disk has (or would have) no space left: the message starts with "no space left
    on device" and says what needed the space."""


class StorageError(TrainingAgentError):
    """A blob could not be read or written."""


class StoragePermissionDenied(StorageError):
    """The store refused access (401/403)."""


class BlobNotFound(StorageError):
    pass


class MetadataError(TrainingAgentError):
    """The metadata store failed. `unreachable`: it could not be reached at all (an outage, a
    connection lost), so the same call may succeed once it is back; a refusal is not."""

    def __init__(self, message: str = "", *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class MetadataPermissionDenied(MetadataError):
    pass


class TrainingError(TrainingAgentError):
    """Training itself failed (bad backbone, no weights, diverged, out of memory, ...)."""


class WeightsUnavailable(TrainingError):
    """Pretrained weights were asked for and cannot be had; never a silent random init."""


class JobCancelled(TrainingAgentError):
    """The job was cancelled while it ran."""
