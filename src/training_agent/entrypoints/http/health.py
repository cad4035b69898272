"""Health checks: each dependency answers within a deadline, or the agent is unavailable.

The checks run in threads of their own (not the server's worker threads, which a hung store can
fill), all at once under one deadline, so /health answers within CHECK_TIMEOUT_SECONDS whatever
the dependencies do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

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


async def run_checks(checks: Mapping[str, Check],
                     timeout: float = CHECK_TIMEOUT_SECONDS) -> Health:
    """Every check at once; one that has not answered by the deadline is reported down (its
    thread is left to finish on its own)."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health")
    try:
        futures = {name: asyncio.wrap_future(pool.submit(_timed, check))
                   for name, check in checks.items()}
        await asyncio.wait(futures.values(), timeout=timeout)
    finally:
        pool.shutdown(wait=False)
    results = {}
    for name, future in futures.items():
        if future.done():
            results[name] = future.result()
        else:
            future.cancel()
            results[name] = CheckResult(ok=False, detail=f"no answer in {timeout:g}s",
                                        seconds=timeout)
    ok = all(r.ok for r in results.values())
    return Health(status="ok" if ok else "unavailable", checks=results)


def default_checks(repo: MetadataRepo, blobs: BlobStore, model_store_url: str,
                   runner: JobRunner) -> dict[str, Check]:
    def metadata_store() -> str:
        repo.ping()
        return type(repo).__name__

    def model_store() -> str:
        blobs.ping(model_store_url)  # reaches the bucket, not only the service
        return redact_url(model_store_url)

    return {"metadata_store": metadata_store, "model_store": model_store, "runner": runner.check}
