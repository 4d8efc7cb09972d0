"""Crash points fire one at a time: two threads reaching armed points together leave one marker, one crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.reliability.crashpoints import CRASH_AT_VARIABLE, CRASH_ONCE_VARIABLE

# The first point's fsync is held (a slow disk) until the second thread's marker appears, or for a
# second at most: a second point reached in that window must wait for the kill instead of firing too.
TWO_THREADS = """
import os, threading, time
from pathlib import Path
from shared.reliability import crashpoints

once = Path(os.environ["MDD_TEST_CRASH_ONCE_DIR"])
real_fsync, first = os.fsync, threading.Event()

def slow_fsync(descriptor):
    if not first.is_set():
        first.set()
        deadline = time.monotonic() + 1.0
        while not (once / "second.crashed").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    real_fsync(descriptor)

os.fsync = slow_fsync
second = threading.Thread(target=lambda: (first.wait(), crashpoints.crash_point("second")))
second.start()
crashpoints.crash_point("first")
"""
ROOT = Path(__file__).resolve().parents[2]


def _base_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_a_point_reached_while_another_fires_neither_fires_nor_leaves_a_marker(tmp_path: Path) -> None:
    env = {CRASH_AT_VARIABLE: "first,second", CRASH_ONCE_VARIABLE: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", TWO_THREADS], env={**_base_env(), **env}, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.crashed"]


def test_a_point_that_already_fired_lets_the_process_carry_on(tmp_path: Path) -> None:
    (tmp_path / "first.crashed").touch()
    env = {CRASH_AT_VARIABLE: "first", CRASH_ONCE_VARIABLE: str(tmp_path)}
    script = "from shared.reliability import crashpoints\ncrashpoints.crash_point('first')\ncrashpoints.crash_point('first')"
    done = subprocess.run([sys.executable, "-c", script], env={**_base_env(), **env}, timeout=60)
    assert done.returncode == 0
