"""What comes in: projects, their dataset zips and training configs, checked before they are
stored."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from . import archive
from .config import TrainingConfig, resolve_config
from .errors import BlobNotFound, DatasetInvalid, InvalidInput, TrainingAgentError
from .journal import Part, safely
from .models import Dataset, Project, new_id
from .ports import Trainer
from .urls import check_dataset_url, redact_text, redact_url


def checked_config(trainer: Trainer, *layers: dict[str, Any] | None) -> TrainingConfig:
    """The config `layers` resolve to, checked by the trainer (its backbones, its knobs)."""
    config = resolve_config(*layers)
    trainer.check_config(config)
    return config


MAX_NAME = 200  # characters of a project's name


def check_project_name(name: str) -> None:
    """A project's name reaches logs, terminals, notifications and the models row's name
    (`<name>_model`): not blank, not over MAX_NAME characters, no control characters."""
    if not name.strip():
        raise InvalidInput("project name is empty: give the project a name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"project name is {len(name)} characters long, more than the "
                           f"limit of {MAX_NAME}")
    if code := archive.control_character(name):
        raise InvalidInput(f"project name {name!r} contains the control character {code}; "
                           "refused")


class Intake(Part):
    """Creates projects and stores their datasets, once checked."""

    def create_project(
        self, name: str, dataset_url: str, config: dict[str, Any] | None = None
    ) -> Project:
        """Check what can be checked at once (the URL, the config, that the dataset exists;
        for a `file://` zip also its central directory), then write the project and dataset
        rows. A store that cannot answer here (no credentials on this machine, unreachable)
        is no refusal: the check is noted in the project's log and the job makes it."""
        check_project_name(name)
        check_dataset_url(dataset_url)
        # stored as validated (strict types; 1 for a float knob is 1.0), only the keys given
        validated = checked_config(self.setup.trainer, config or {}).model_dump(
            mode="json", exclude_unset=True)
        unchecked = self._check_dataset(dataset_url)
        repo = self.setup.repo
        project = repo.add_project(Project(name=name, training_config=validated))
        repo.add_dataset(Dataset(project_id=project.id, gcs_url=dataset_url, name=name))
        self.journal.log(project.id, "info", "project created",
                         dataset_url=redact_url(dataset_url))
        if unchecked:
            self.journal.log(project.id, "warning", f"dataset not checked at create: {unchecked}")
        return project

    def create_project_from_file(
        self, name: str, archive_path: Path, config: dict[str, Any] | None = None
    ) -> tuple[Project, str]:
        """`project create` with a local zip: config and zip checked before the zip is copied
        into the model store. Returns the project and the dataset's URL."""
        check_project_name(name)
        checked_config(self.setup.trainer, config or {})
        url = self.store_dataset(archive_path)
        try:
            return self.create_project(name, url, config), url
        except BaseException:
            safely(self.setup.blobs.delete, url)  # a refused create leaves no copy behind
            raise

    def store_dataset(self, archive_path: Path) -> str:
        """Copy a local dataset zip into the model store, once its central directory passed
        the intake checks; returns its URL."""
        self.check_dataset_file(archive_path)
        # '?' and '#' would read as a query or fragment (refused on these schemes): escaped
        name = archive_path.name.replace("?", "%3F").replace("#", "%23")
        url = f"{self.setup.model_store_url.rstrip('/')}/datasets/{new_id()}/{name}"
        return self.setup.blobs.upload(archive_path, url)

    def check_dataset_file(self, path: Path, shown: str | None = None) -> list[str]:
        """A local dataset zip: exists, is a zip, passes every intake check that needs no
        inflating (archive.inspect_archive). Returns its class names; InvalidInput otherwise."""
        shown = shown or str(path)
        if path.is_dir():
            raise InvalidInput(f"dataset {shown} is a directory, not a zip: zip it (train/"
                               "<class>/<image> at its root or inside one top folder) and give "
                               "the zip")
        if not path.exists():
            raise InvalidInput(f"dataset {shown} does not exist")
        if not path.is_file() or not zipfile.is_zipfile(path):
            raise InvalidInput(f"dataset file {shown} is not a zip archive")
        try:
            return archive.inspect_archive(path, self.setup.limits)
        except DatasetInvalid as exc:
            raise InvalidInput(f"dataset {shown} refused: {exc}") from None

    def _check_dataset(self, url: str) -> str | None:
        """Refuses a dataset that is surely unusable; returns why it could not be checked,
        or None when it was."""
        shown = redact_url(url)
        blobs = self.setup.blobs
        try:
            path = blobs.local_path(url)
            if path is None:
                blobs.size(url)  # a HEAD: it exists
        except BlobNotFound:
            raise InvalidInput(f"dataset {shown} does not exist") from None
        except TrainingAgentError as exc:  # no credentials here, store down, extra missing
            return redact_text(f"{type(exc).__name__}: {exc}")
        if path is not None:
            self.check_dataset_file(path, shown)
        return None
