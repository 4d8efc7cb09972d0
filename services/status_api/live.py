"""Live study changes: an in-process broadcaster the projector feeds and ``GET /events`` streams (SSE).

The projector publishes a study's summary after each committed change; every open stream has its own
bounded queue and receives only the studies its principal may see (the same scope as the study list).
A principal holds at most ``MDD_API_MAX_STREAMS_PER_PRINCIPAL`` streams per replica; each stream looks
its token up again every ``MDD_AUTH_CACHE_SECONDS`` and at the token's expiry, and ends (with a
``closed`` event saying why) once the key or user is deactivated, changed or expired.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.status_api.schemas import StudySummary
from services.status_api.security import (
    Principal,
    TokenRefused,
    audit_async,
    principal_of,
    refuse_write_only,
    scoped,
    unauthorized,
)
from services.status_api.state import STATUS_LABELS
from services.status_api.tables import StudyRow

log = logging.getLogger("mdd.status_api.live")
QUEUE_SIZE = 1000
RETRY_MS = 3000
MIN_RECHECK_SECONDS = 1.0  # with MDD_AUTH_CACHE_SECONDS=0 a stream still looks its token up once a second, not constantly
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
    token: str = ""
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


class StreamLimit(Exception):
    """The principal already holds as many streams as allowed."""


def stream_owner(principal: Principal) -> str:
    """Whose streams are counted together: one user, or every key of one name."""
    return f"{principal.kind}:{principal.name}"


class Broadcaster:
    """Fans study changes out to the open streams; ``publish`` may be called from any thread."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()

    def subscribe(self, principal: Principal, limit: int | None = None, token: str = "") -> Subscriber:
        """Register a stream on the running event loop; ``StreamLimit`` if the principal already holds ``limit``."""
        subscriber = Subscriber(principal, asyncio.get_running_loop(), token)
        with self._lock:
            if limit is not None and sum(stream_owner(s.principal) == stream_owner(principal) for s in self._subscribers) >= limit:
                raise StreamLimit(limit)
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
        query = scoped(select(StudyRow.study_uid).where(
            StudyRow.hospital_id == summary.hospital_id, StudyRow.study_uid == summary.study_uid), principal)
        return session.exec(query).first() is not None


_bearer = HTTPBearer(auto_error=False)


def stream_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[
        str | None,
        Query(description="Token para EventSource, que no puede enviar encabezados / token for EventSource, "
                          "which cannot send headers"),
    ] = None,
) -> tuple[Principal, str]:
    """The caller of the stream and its token: ``Authorization: Bearer`` or, for browsers' EventSource, ``?access_token=``."""
    token = credentials.credentials if credentials else access_token
    if not token:
        raise unauthorized("falta el token / missing bearer token")
    try:
        principal = principal_of(request.app.state, token)
    except TokenRefused as refused:
        raise unauthorized(refused.reason) from None
    refuse_write_only(principal)  # an upload-only key does not watch its hospitals' studies either
    request.state.principal = principal
    return principal, token


async def stream_subscription(
    request: Request, caller: Annotated[tuple[Principal, str], Depends(stream_caller)]
) -> AsyncIterator[Subscriber]:
    """The stream's place in the broadcaster, held until the response ends; 429 past the principal's limit."""
    principal, token = caller
    limit = request.app.state.ctx.settings.api_max_streams_per_principal
    try:
        subscriber = BROADCASTER.subscribe(principal, limit, token)
    except StreamLimit:
        raise HTTPException(
            429, f"Demasiados flujos en vivo abiertos con este usuario o llave (máximo {limit}); cierre uno / too many "
                 f"live streams open for this user or key (at most {limit}); close one", headers={"Retry-After": str(RETRY_MS // 1000)},
        ) from None
    try:
        yield subscriber
    finally:
        BROADCASTER.unsubscribe(subscriber)


def still_honoured(state: object, subscriber: Subscriber) -> str | None:
    """Why the stream's token may no longer be used (deactivated, expired, its role or scope changed), or None."""
    try:
        principal = principal_of(state, subscriber.token)
    except TokenRefused as refused:
        return refused.reason
    if principal.model_dump(exclude={"expires_at"}) != subscriber.principal.model_dump(exclude={"expires_at"}):
        return "cambiaron el rol o los hospitales; vuelva a conectarse / the role or hospitals changed; reconnect"
    return None


def _seconds_to_next_check(principal: Principal, next_check: float) -> float:
    wait = next_check - time.monotonic()
    if principal.expires_at is not None:
        wait = min(wait, principal.expires_at.timestamp() - time.time())
    return max(wait, 0.0)


router = APIRouter()


@router.get(
    "/events", response_class=EventSourceResponse, tags=["en vivo / live"],
    responses={200: {"description": "text/event-stream: `ready`, luego un `study` por cambio y `closed` si el token deja "
                                    "de valer / then one `study` per change, and `closed` when the token stops being valid"},
               429: {"description": "Demasiados flujos de este usuario o llave / too many streams for this user or key"}},
)
async def study_events(request: Request, subscriber: Annotated[Subscriber, Depends(stream_subscription)]) -> AsyncIterator[ServerSentEvent]:
    """Cambios de estudios en vivo (SSE) del alcance de quien llama / live study changes (SSE) in the caller's scope.

    First a ``ready`` event, then one ``study`` event (the study summary as JSON) per change; comment lines
    keep the connection alive. ``?access_token=`` is accepted here only, because EventSource cannot send headers.
    The stream ends with a ``closed`` event (``reason``) once its key or user is deactivated or its token expires.
    """
    engine: Engine = request.app.state.ctx.engine
    principal = subscriber.principal
    recheck = max(request.app.state.ctx.settings.auth_cache_seconds, MIN_RECHECK_SECONDS)
    next_check = time.monotonic() + recheck
    await audit_async(request, principal, "study.stream", detail="SSE")
    yield ServerSentEvent(event="ready", data={"principal": principal.name, "role": principal.role, "replica": REPLICA_ID},
                          retry=RETRY_MS)
    while True:
        try:
            item = await asyncio.wait_for(subscriber.queue.get(), _seconds_to_next_check(principal, next_check))
        except asyncio.TimeoutError:
            item = None
        if item is None or time.monotonic() >= next_check:
            reason = await asyncio.to_thread(still_honoured, request.app.state, subscriber)
            if reason is not None:
                yield ServerSentEvent(event="closed", data={"reason": reason})
                return
            next_check = time.monotonic() + recheck
        if item is None:
            continue
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
