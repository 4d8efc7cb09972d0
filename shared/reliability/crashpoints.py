"""Crash points: where the fault tests kill a process on purpose, at a commit, publish or send boundary.

``MDD_TEST_CRASH_AT`` names the points, comma-separated (``outbox.published``, ``bus.handled`` …);
only the tests set it. When the process reaches a named point it kills itself with SIGKILL — no
clean-up, no flush, exactly as a power cut or the kernel's OOM killer would. With
``MDD_TEST_CRASH_ONCE_DIR`` set, each point fires once per folder: a marker file written (and
fsynced) before the kill keeps the restarted process from crashing at the same point again.
Without the variable every call is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
import threading
from functools import cache
from pathlib import Path

CRASH_AT_VARIABLE = "MDD_TEST_CRASH_AT"
CRASH_ONCE_VARIABLE = "MDD_TEST_CRASH_ONCE_DIR"

# Held from the moment a point decides to fire until the process is gone: writing the
# marker and fsyncing it lets other threads run, and a second point reached in that window must not
# leave its marker too (it would count as fired without a crash of its own).
_firing = threading.Lock()


@cache
def _armed() -> frozenset[str]:
    return frozenset(point.strip() for point in os.environ.get(CRASH_AT_VARIABLE, "").split(",") if point.strip())


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if the tests armed ``name``; otherwise do nothing."""
    if name not in _armed():
        return
    _firing.acquire()
    once = os.environ.get(CRASH_ONCE_VARIABLE)
    if once:
        marker = Path(once) / f"{name}.crashed"
        try:
            descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _firing.release()
            return
        os.fsync(descriptor)
        os.close(descriptor)
    os.kill(os.getpid(), signal.SIGKILL)
