"""Study changes shared between replicas of the status API (PostgreSQL ``LISTEN``/``NOTIFY``).

Each replica projects the events of its own share of the Kafka partitions, and a live stream
(SSE) may be open on any replica. So the projector notifies ``mdd_study_changed`` with the studies
it changed (hospital and UID), inside its transaction (PostgreSQL delivers the notice only if it commits), and
every replica listens: changes made by another replica are read back and fanned out to the
streams open here. A replica's own changes reach its streams directly, so notices carry the
sending process's origin and a replica skips its own. Notices sent while a replica's listening
connection was down are lost, so after reconnecting it replays the studies changed since. SQLite
(embedded mode) has one process and no notices.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import or_, text, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from shared.events import utc_now
from services.status_api.live import BROADCASTER, REPLICA_ID, study_summary
from services.status_api.tables import StudyKey, StudyRow

log = logging.getLogger("mdd.status_api.changes")
CHANNEL = "mdd_study_changed"
ORIGIN = REPLICA_ID
_PAYLOAD_LIMIT = 7000  # PostgreSQL refuses payloads of 8000 bytes or more
# A projector stamps ``updated_at`` before it commits: replays reach back this far before the loss.
REPLAY_MARGIN = timedelta(seconds=30)


def notices(studies: list[StudyKey], origin: str = ORIGIN) -> list[str]:
    """The payloads announcing these studies: the origin, then ``hospital/UID`` tokens separated by spaces.

    Neither a hospital id nor a UID holds a slash or a space, so each token names one hospital's study.
    """
    payloads: list[str] = []
    current = origin
    for hospital_id, uid in studies:
        token = f"{hospital_id}/{uid}"
        if len(current) + 1 + len(token) > _PAYLOAD_LIMIT:
            payloads.append(current)
            current = origin
        current += " " + token
    if current != origin:
        payloads.append(current)
    return payloads


def studies_in(tokens: list[str]) -> tuple[list[StudyKey], list[str]]:
    """The (hospital, UID) keys a notice names, and the bare UIDs a replica of an earlier version sent."""
    keys: list[StudyKey] = []
    bare: list[str] = []
    for token in tokens:
        hospital_id, slash, uid = token.partition("/")
        if slash:
            keys.append((hospital_id, uid))
        elif token:
            bare.append(token)
    return keys, bare


def announce(session: Session, studies: list[StudyKey]) -> None:
    """Notify the other replicas of changed studies; delivered when ``session`` commits (PostgreSQL only)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for payload in notices(studies):
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})


class ChangeListener:
    """Listens for other replicas' notices in a thread and fans their changes out to this process's streams."""

    def __init__(self, engine: Engine, retry_seconds: float = 2.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    @property
    def enabled(self) -> bool:
        """Only PostgreSQL carries notices."""
        return self.engine.dialect.name == "postgresql"

    def start(self) -> None:
        """Start listening (no-op on SQLite)."""
        if self.enabled and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mdd-change-listener", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening (within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        lost_at: datetime | None = None
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    if lost_at is not None:  # notices sent while nobody listened are gone: read those changes
                        self._replay(lost_at - REPLAY_MARGIN)
                        lost_at = None
                    self.listening.set()
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=1.0):
                            self._changed(notice.payload)
            except psycopg.Error:
                if self.listening.is_set():
                    lost_at = utc_now()
                self.listening.clear()
                log.warning("Sin avisos de otras réplicas; se reintenta / change notices lost; reconnecting", exc_info=True)
                self._stop.wait(self.retry_seconds)

    def _replay(self, since: datetime) -> None:
        """Fan out every study changed since ``since`` (a stream may see a change twice, never miss one)."""
        if not BROADCASTER.count:
            return
        with Session(self.engine) as session:
            for row in session.exec(select(StudyRow).where(col(StudyRow.updated_at) >= since)):
                BROADCASTER.publish(study_summary(row))

    def _changed(self, payload: str) -> None:
        origin, *tokens = payload.split(" ")
        if origin == ORIGIN or not tokens or not BROADCASTER.count:
            return
        keys, bare = studies_in(tokens)
        named = [tuple_(col(StudyRow.hospital_id), col(StudyRow.study_uid)).in_(keys)] if keys else []
        named += [col(StudyRow.study_uid).in_(bare)] if bare else []
        if not named:
            return
        with Session(self.engine) as session:
            for row in session.exec(select(StudyRow).where(or_(*named))):
                BROADCASTER.publish(study_summary(row))
