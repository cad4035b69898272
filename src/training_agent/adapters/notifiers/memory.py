"""In-memory Notifier: keeps what it was told, for tests."""

from __future__ import annotations

from training_agent.domain.ports import Notification, Notifier


class InMemoryNotifier(Notifier):
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        self.sent.append(notification)
