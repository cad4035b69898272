"""The lowest CPU priority for one thread (the checkpoint writer, the standby worker's
loading): that thread and the threads it starts, never the rest of the process."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from training_agent.adapters.trainers.priority import lowest_for_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a thread's own priority is Linux's")


def test_only_the_calling_thread_and_its_children_are_lowered():
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def background() -> None:
        lowest_for_this_thread()
        seen["itself"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started = threading.Thread(target=child)
        started.start()
        started.join()

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == {"itself": 19, "child": 19}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before < 19
