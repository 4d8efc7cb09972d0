"""Live study changes: an in-process broadcaster the projector feeds and ``GET /events`` streams (SSE).

The projector publishes a study's summary after each committed change; every open stream has its own
bounded queue and receives only the studies its principal may see (the same scope as the study list).
"""

from __future__ import annotations

import asyncio
import uuid
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.status_api.schemas import StudySummary
from services.status_api.security import Principal, TokenRefused, audit_async, resolve_principal, scoped
from services.status_api.state import STATUS_LABELS
from services.status_api.tables import StudyRow

log = logging.getLogger("mdd.status_api.live")
QUEUE_SIZE = 1000
RETRY_MS = 3000
_CLOSE = object()  # sentinel that ends a stream (server shutdown)
#: This process among the status API's replicas (named in change notices and in each stream's ``ready`` event).
REPLICA_ID = uuid.uuid4().hex


def study_summary(row: StudyRow) -> StudySummary:
    """The list's view of a study row (what a stream sends for every change)."""
    # Attribute access (not model_dump) so a row expired by its commit is reloaded.
    values = {name: getattr(row, name) for name in StudySummary.model_fields if name != "state_label"}
    return StudySummary.model_validate({**values, "state_label": STATUS_LABELS.get(row.state, row.state)})


@dataclass(eq=False)
class Subscriber:
    """One open stream: whose it is, its loop and its queue of changes."""

    principal: Principal
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


class Broadcaster:
    """Fans study changes out to the open streams; ``publish`` may be called from any thread."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()

    def subscribe(self, principal: Principal) -> Subscriber:
        """Register a stream on the running event loop."""
        subscriber = Subscriber(principal, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream (client gone or server stopping)."""
        with self._lock:
            self._subscribers.discard(subscriber)

    @property
    def count(self) -> int:
        """Open streams right now."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, summary: StudySummary) -> None:
        """Queue a study's new summary for every open stream (scope is checked by each stream)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(self._offer, subscriber, summary)
            except RuntimeError:  # its loop is closed: the stream is gone
                self.unsubscribe(subscriber)

    def close(self) -> None:
        """End every open stream, so the web server can stop; new streams may still open later."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(self._offer, subscriber, _CLOSE)
            except RuntimeError:
                self.unsubscribe(subscriber)

    @staticmethod
    def _offer(subscriber: Subscriber, item: object) -> None:
        try:
            subscriber.queue.put_nowait(item)
        except asyncio.QueueFull:  # a stalled client loses changes, never the server's memory
            subscriber.dropped += 1


#: The process's broadcaster: the projector and the API of one process share it.
BROADCASTER = Broadcaster()


def publish_change(row: StudyRow) -> None:
    """Announce a committed change of a study to the open streams."""
    if BROADCASTER.count:
        BROADCASTER.publish(study_summary(row))


def may_see(engine: Engine, principal: Principal, summary: StudySummary) -> bool:
    """Whether the principal may see this study: the list's SQL scope, checked without SQL where it is plain."""
    if principal.role == "admin":
        return True
    if principal.role in ("hospital_staff", "doctor"):
        return summary.hospital_id in principal.hospitals
    with Session(engine) as session:  # providers: the assignment table decides
        query = scoped(select(StudyRow.study_uid).where(StudyRow.study_uid == summary.study_uid), principal)
        return session.exec(query).first() is not None


_bearer = HTTPBearer(auto_error=False)


def stream_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[
        str | None,
        Query(description="Token para EventSource, que no puede enviar encabezados / token for EventSource, "
                          "which cannot send headers"),
    ] = None,
) -> Principal:
    """The caller of the stream: ``Authorization: Bearer`` or, for browsers' EventSource, ``?access_token=``."""
    token = credentials.credentials if credentials else access_token
    if not token:
        raise HTTPException(401, "No autenticado / not authenticated: falta el token / missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    settings = request.app.state.ctx.settings
    try:
        principal = resolve_principal(request.app.state.ctx.engine, request.app.state.jwt_secret, token,
                                      settings.auth_jwt_issuer, settings.auth_jwt_audience)
    except TokenRefused as refused:
        raise HTTPException(401, f"No autenticado / not authenticated: {refused.reason}",
                            headers={"WWW-Authenticate": "Bearer"}) from None
    if principal is None:
        raise HTTPException(401, "No autenticado / not authenticated: token inválido o vencido / invalid or expired token",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


router = APIRouter()


@router.get(
    "/events", response_class=EventSourceResponse, tags=["en vivo / live"],
    responses={200: {"description": "text/event-stream: `ready`, luego un `study` por cambio / then one `study` per change"}},
)
async def study_events(request: Request, principal: Annotated[Principal, Depends(stream_principal)]) -> AsyncIterator[ServerSentEvent]:
    """Cambios de estudios en vivo (SSE) del alcance de quien llama / live study changes (SSE) in the caller's scope.

    First a ``ready`` event, then one ``study`` event (the study summary as JSON) per change; comment lines
    keep the connection alive. ``?access_token=`` is accepted here only, because EventSource cannot send headers.
    """
    engine: Engine = request.app.state.ctx.engine
    subscriber = BROADCASTER.subscribe(principal)
    await audit_async(request, principal, "study.stream", detail="SSE")
    try:
        yield ServerSentEvent(event="ready", data={"principal": principal.name, "role": principal.role, "replica": REPLICA_ID},
                              retry=RETRY_MS)
        while True:
            item = await subscriber.queue.get()
            if item is _CLOSE:
                return
            assert isinstance(item, StudySummary)
            if principal.role == "provider":  # needs the database: off the event loop
                visible = await asyncio.to_thread(may_see, engine, principal, item)
            else:
                visible = may_see(engine, principal, item)
            if visible:
                yield ServerSentEvent(event="study", id=f"{item.study_uid}@{item.updated_at.isoformat()}",
                                      data=item.model_dump(mode="json"))
    finally:
        BROADCASTER.unsubscribe(subscriber)
