"""Health checks: each dependency answers within a deadline, or the agent is unavailable."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from training_agent.adapters.blobstore.router import BlobStoreRouter
from training_agent.domain.ports import BlobStore, MetadataRepo
from training_agent.domain.urls import redact_text, redact_url

from ..worker.runner import JobRunner
from .schemas import CheckResult, Health

Check = Callable[[], object]
"""Returns a short detail (or None) when healthy; raises when the dependency is down."""

CHECK_TIMEOUT_SECONDS = 5.0


def _timed(check: Check) -> CheckResult:
    t0 = time.monotonic()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # the check's whole point is to report the failure
        detail, ok = redact_text(f"{type(exc).__name__}: {exc}")[:300], False
    return CheckResult(ok=ok, detail=str(detail or "ok"), seconds=round(time.monotonic() - t0, 4))


def run_checks(checks: Mapping[str, Check], timeout: float = CHECK_TIMEOUT_SECONDS) -> Health:
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health")
    try:
        futures = {name: pool.submit(_timed, check) for name, check in checks.items()}
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=timeout)
            except FutureTimeout:
                results[name] = CheckResult(ok=False, detail=f"no answer in {timeout:g}s",
                                            seconds=timeout)
    finally:
        pool.shutdown(wait=False)
    ok = all(r.ok for r in results.values())
    return Health(status="ok" if ok else "unavailable", checks=results)


def default_checks(repo: MetadataRepo, blobs: BlobStore, model_store_url: str,
                   runner: JobRunner) -> dict[str, Check]:
    def metadata_store() -> str:
        repo.ping()
        return type(repo).__name__

    def model_store() -> str:
        store = blobs.store_for(model_store_url) if isinstance(blobs, BlobStoreRouter) else blobs
        store.ping()
        return redact_url(model_store_url)

    return {"metadata_store": metadata_store, "model_store": model_store, "runner": runner.check}
