"""Argon2 on a small thread pool of its own, so that a sign-in flood cannot starve the other routes.

Every other blocking route shares the request thread pool (as many threads as pooled database
connections). A password check costs tens of milliseconds of CPU and tens of megabytes; run there,
a few dozen concurrent sign-ins held every thread. Here at most ``workers`` checks run at once and
at most ``workers * WAITING_PER_WORKER`` wait; past that a sign-in is answered 503 at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException

T = TypeVar("T")
WAITING_PER_WORKER = 32


class PasswordWorkers:
    """A bounded executor for password hashing and verification."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdd-password")
        self.capacity = workers * (WAITING_PER_WORKER + 1)
        self._pending = 0
        self._lock = threading.Lock()

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on a password thread; 503 with ``Retry-After`` when the queue is full."""
        with self._lock:
            if self._pending >= self.capacity:
                raise HTTPException(503, "Demasiados inicios de sesión a la vez; reintente / too many sign-ins at once; retry",
                                    headers={"Retry-After": "1"})
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Stop the threads once the running checks are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
