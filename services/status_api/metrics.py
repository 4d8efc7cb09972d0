"""Prometheus metrics of the status API: requests by route and status, events applied, studies by state and light.

``GET /metrics`` carries only counts (no study UIDs, no hospital ids, no patient data), but counts of
every hospital, so it is not open: an administrator, or a scraper holding ``MDD_METRICS_TOKEN`` (a
token that opens this route and nothing else), may read it.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.status_api.security import authenticated_principal, oauth2_scheme
from services.status_api.tables import StudyRow

#: Process-wide: the projector of this process counts every event it applies (redeliveries excluded).
EVENTS_APPLIED = Counter(
    "mdd_status_events_applied", "Eventos aplicados a la proyección / events applied to the projection", ["event_type"]
)


class StudiesCollector(Collector):
    """Studies by state, status light and triage light, counted in the database at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per (state, status light, triage light) present; triage ``NONE`` = not yet triaged."""
        family = GaugeMetricFamily(
            "mdd_studies", "Estudios por estado y semáforos / studies by state and lights",
            labels=["state", "status_light", "triage_light"],
        )
        query = select(StudyRow.state, StudyRow.status_light, StudyRow.triage_light, func.count()).group_by(
            StudyRow.state, StudyRow.status_light, StudyRow.triage_light
        )
        with Session(self.engine) as session:
            for state, status_light, triage_light, count in session.exec(query).all():
                family.add_metric([state, status_light, triage_light or "NONE"], count)
        yield family


class ApiMetrics:
    """The request metrics and the study gauge of one application, in their own registry."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mdd_api_requests", "Peticiones HTTP / HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mdd_api_request_seconds", "Duración de las peticiones / request duration", ["method", "route"],
            registry=self.registry,
        )
        self.studies = StudiesCollector(engine)
        self.registry.register(self.studies)

    def exposition(self) -> bytes:
        """This application's metrics followed by the process-wide ones (events, process, Python).

        With ``PROMETHEUS_MULTIPROC_DIR`` set (replicas sharing a port), counters and histograms are
        summed over every process that wrote to that folder, whichever replica answers the scrape.
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            MultiProcessCollector(combined)
            combined.register(self.studies)
            return generate_latest(combined)
        return generate_latest(self.registry) + generate_latest(REGISTRY)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/studies/{study_uid}``), so labels stay few; ``unmatched`` otherwise.

    The router records the route it chose in the scope; read it once the request has been handled.
    """
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


class MetricsMiddleware:
    """Pure ASGI middleware (safe with endless SSE streams): counts every request by method, route template
    and status, and times it until its response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            metrics: ApiMetrics = scope["app"].state.metrics
            route, method = route_template(scope), scope["method"]
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.latency.labels(method, route).observe(time.perf_counter() - start)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            record(500)  # no response started: the server answers 500


router = APIRouter()


async def metrics_reader(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> None:
    """The scraper's ``MDD_METRICS_TOKEN`` or an administrator; 401 without a valid token, 403 for other roles."""
    expected = request.app.state.ctx.settings.metrics_token
    if token and expected is not None and expected.get_secret_value() and \
            hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return
    principal = await authenticated_principal(request, token)
    if principal.role != "admin":
        raise HTTPException(403, "Sin permiso / forbidden: /metrics requiere admin o MDD_METRICS_TOKEN / "
                                 "requires admin or MDD_METRICS_TOKEN")


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
def metrics_endpoint(request: Request) -> Response:
    """Métricas de Prometheus (solo conteos; admin o MDD_METRICS_TOKEN) / Prometheus metrics (counts only; admin or
    MDD_METRICS_TOKEN)."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, engine: Engine) -> None:
    """Add the metrics registry, the request middleware and ``GET /metrics`` to the application."""
    app.state.metrics = ApiMetrics(engine)
    app.add_middleware(MetricsMiddleware)
    app.include_router(router)
