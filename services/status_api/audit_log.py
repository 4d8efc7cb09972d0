"""The audit log's writer: each entry is committed before the response that it audits goes out.

Requests hand their entries to one writer thread, which inserts whatever has queued up in one
statement and one commit (a group commit): under load a hundred reads cost one commit instead of a
hundred, and no read is answered before its audit row is durable. The writer has its own engine
(its own connection pool), so a request that holds a connection while it waits for its entry can
never starve the writer of one. The thread stops when idle and starts again on the next entry.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from shared.db import make_engine
from services.status_api.auth_tables import AuditRow

log = logging.getLogger("mdd.status_api.audit")
_Entry = tuple[dict[str, object], "Future[None]"]


class AuditLog:
    """Group-committing writer of ``auth_audit`` rows."""

    def __init__(self, engine: Engine, max_batch: int = 500, idle_seconds: float = 5.0, timeout_seconds: float = 30.0) -> None:
        self.engine = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self.timeout_seconds = timeout_seconds
        self._queue: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, entry: dict[str, object]) -> Future[None]:
        """Queue one row (``AuditRow`` columns); the future is done once it is committed."""
        done: Future[None] = Future()
        with self._lock:
            self._queue.put((entry, done))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="mdd-audit-writer", daemon=True).start()
        return done

    def record(self, entry: dict[str, object]) -> None:
        """Write one row and wait until it is committed (raises if it could not be)."""
        self.submit(entry).result(timeout=self.timeout_seconds)

    async def record_async(self, entry: dict[str, object]) -> None:
        """``record`` for coroutines: waits without blocking the event loop."""
        await asyncio.wait_for(asyncio.wrap_future(self.submit(entry)), self.timeout_seconds)

    def close(self) -> None:
        """Release the writer's connections (an idle writer holds none once its thread has stopped)."""
        self.engine.dispose()

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=self.idle_seconds)]
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # nothing can arrive unseen: submit takes the lock to enqueue
                        self._running = False
                        return
                continue
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(AuditRow), [entry for entry, _ in batch])
        except Exception as exc:  # every waiting request fails: patient data is not served unaudited
            log.exception("No se pudo escribir la bitácora de auditoría / audit log write failed")
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)
