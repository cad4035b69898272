"""Jobs' scratch folders under the work root: where each is, and removing those left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from .journal import Setup


class WorkFolders:
    """Each job's work folder (the downloaded zip, the extracted dataset)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    def work_dir(self, job_id: str) -> Path:
        """The job's scratch folder: the downloaded zip and the extracted dataset."""
        return self.setup.work_root / "jobs" / job_id

    def remove_work(self, job_id: str) -> None:
        """Remove a job's work folder: what a worker killed before its own cleanup (SIGKILL,
        out of memory) leaves behind."""
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def sweep_work(self) -> list[str]:
        """Remove the work folders of jobs that are not active (their workers died without
        cleaning up); returns those jobs' ids. The folders are listed before the active jobs
        are read, so a job claimed in between (active, its folder still to come) is safe."""
        root = self.setup.work_root / "jobs"
        folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        if not folders:
            return []
        active = {j.id for j in self.setup.repo.active_jobs()}
        gone = [p for p in folders if p.name not in active]
        for folder in gone:
            shutil.rmtree(folder, ignore_errors=True)
        return [p.name for p in gone]
