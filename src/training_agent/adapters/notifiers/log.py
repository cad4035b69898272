"""Log Notifier: the embedded default, writes the user's message to the application log."""

from __future__ import annotations

import logging

from training_agent.domain.ports import Notification, Notifier

log = logging.getLogger("training_agent.notify")


class LogNotifier(Notifier):
    def notify(self, notification: Notification) -> None:
        level = logging.ERROR if not notification.ok else (
            logging.INFO if notification.mark == "✅" else logging.WARNING)
        log.log(level, "%s", notification.headline)
