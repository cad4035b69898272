"""Log Notifier: the embedded default, writes the user's message to the application log."""

from __future__ import annotations

import logging

from training_agent.domain.ports import Notification, Notifier

log = logging.getLogger("training_agent.notify")


class LogNotifier(Notifier):
    def notify(self, notification: Notification) -> None:
        mark = "✅" if notification.ok else "❌"
        log.log(logging.INFO if notification.ok else logging.ERROR, "%s [%s] %s", mark,
                notification.project_name, notification.message)
