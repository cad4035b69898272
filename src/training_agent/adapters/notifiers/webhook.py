"""Webhook Notifier: POSTs the user's chat message as JSON to `NOTIFY_WEBHOOK_URL`.

Delivery runs on a background thread with retries and exponential backoff (on 5xx, 429 and
connection errors) inside a bounded total time, so a chat that is down never fails or holds up
a job. The URL's path and query often carry the token: logs show only scheme and host."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from training_agent.domain.models import utcnow
from training_agent.domain.ports import Notification, Notifier
from training_agent.domain.urls import redact_url

log = logging.getLogger("training_agent.notify.webhook")
# httpx logs every request's full URL at INFO (and httpcore its details at DEBUG): the webhook's
# token would reach the logs, so those loggers only speak from WARNING up.
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:  # unless the operator chose a level
        logging.getLogger(_name).setLevel(logging.WARNING)


def webhook_target(url: str) -> str:
    """What may be shown of a webhook URL: scheme and host, never the token-bearing rest."""
    return f"{redact_url(url, path=False)}/…"


def webhook_message(n: Notification) -> dict[str, Any]:
    """A chat-friendly `text` plus the structured fields a bot can read."""
    d = n.details
    body: dict[str, Any] = {
        "text": n.headline,  # ✅ / ⚠️ (a weak or chance-level model) / ❌, project, message
        "event": "training_succeeded" if n.ok else "training_failed",
        "ok": n.ok, "project_id": n.project_id, "project_name": n.project_name,
        "job_id": d.get("job_id"), "at": (n.at or utcnow()).isoformat(),
    }
    if n.ok:
        body.update(accuracy=d.get("accuracy"), model_url=d.get("model_url"),
                    verdict=d.get("verdict"))
    else:
        body.update(step=d.get("step"), cause=d.get("cause"))
    return body


class WebhookNotifier(Notifier):
    def __init__(self, url: str, *, attempts: int = 5, backoff: float = 0.5,
                 request_timeout: float = 5.0, budget: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"NOTIFY_WEBHOOK_URL must be http(s): {webhook_target(url)}")
        self._url = url
        self.target = webhook_target(url)
        self.attempts = attempts
        self.backoff = backoff
        self.request_timeout = request_timeout
        self.budget = budget
        self._transport = transport
        self._pending: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.target})"

    def notify(self, notification: Notification) -> None:
        thread = threading.Thread(target=self._deliver, args=(webhook_message(notification),),
                                  name="webhook-notify", daemon=True)
        with self._lock:
            self._pending.add(thread)
        thread.start()

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._pending)
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))

    def deliver(self, message: dict[str, Any]) -> bool:
        """POST with retries inside the budget; True once the hook accepted the message."""
        deadline = time.monotonic() + self.budget
        attempt = 0
        with httpx.Client(transport=self._transport, follow_redirects=False) as client:
            for attempt in range(1, self.attempts + 1):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    r = client.post(self._url, json=message,
                                    timeout=min(self.request_timeout, left))
                    if r.status_code < 300:
                        return True
                    why = f"HTTP {r.status_code}"
                    if r.status_code < 500 and r.status_code != 429:
                        log.warning("webhook %s refused the message: %s", self.target, why)
                        return False
                except httpx.HTTPError as exc:  # connection refused, timeout, reset, ...
                    why = type(exc).__name__
                pause = self.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
                log.info("webhook %s attempt %d/%d failed (%s)", self.target, attempt,
                         self.attempts, why)
                if attempt == self.attempts or time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
        log.warning("webhook %s unreachable; notification dropped after %d attempt(s)",
                    self.target, attempt)
        return False

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            self.deliver(message)
        except Exception:  # never let a notification thread die loudly with a URL in it
            log.warning("webhook %s delivery crashed", self.target)
        finally:
            with self._lock:
                self._pending.discard(threading.current_thread())
