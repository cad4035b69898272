"""Background work that must not slow training down: the calling thread at the lowest CPU
priority. Imports nothing heavy (a standby worker calls it before torch is loaded)."""

from __future__ import annotations

import os
import sys
import threading


def lowest_for_this_thread() -> None:
    """Nice 19 for the calling thread only, and the threads it starts after (Linux: a thread
    id is a task id, and the priority is the task's); elsewhere, or where it is not
    permitted, nothing changes and the work runs at normal priority."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:
        pass
