"""The status API application: security, study routes, health and the traffic-light board."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse

from shared.db import init_db
from shared.runtime import ServiceContext
from services.status_api import board as board_pages, live, metrics, routes_auth, routes_studies, uploads
from services.status_api.auth_tables import AUTH_TABLES
from services.status_api.headers import SecurityHeaders
from services.status_api.board import render_login
from services.status_api.dicomweb import create_dicomweb_router, principal_hospitals, storing_hospitals
from shared.reliability.health import HealthReport, health_report
from services.status_api.security import current_principal, ensure_bootstrap_key, jwt_secret

router = APIRouter()

# Re-exported for other routers of the status API (e.g. DICOMweb): ``dependencies=[Depends(current_principal)]``.
__all__ = ["create_app", "current_principal"]

DESCRIPTION = """Semáforos de estudios de mastografía / traffic lights of mammography studies.

Todo, salvo `/healthz`, requiere `Authorization: Bearer <token>` (JWT de `/auth/token` o llave de API).
Everything except `/healthz` needs `Authorization: Bearer <token>` (a JWT from `/auth/token` or an API key).
Las salidas de IA vienen de un modelo entrenado con datos sintéticos / AI outputs come from a model trained on
synthetic data."""


@router.get("/healthz", response_model=HealthReport, tags=["salud / health"])
def healthz(request: Request) -> HealthReport:
    """Vivo, listo y qué dependencia falta (sin autenticación) / alive, ready and which dependency is down (no authentication).

    ``status`` es ``degraded`` mientras una dependencia (base de datos, broker, almacén…) no responde;
    las lecturas se siguen sirviendo mientras la base de datos responda. / ``status`` is ``degraded``
    while a dependency does not answer; reads are served as long as the database answers.
    """
    ctx = request.app.state.ctx
    return health_report(ctx.engine, bool(ctx.ready.get("all")))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def board(request: Request) -> str:
    """El tablero: pide usuario y contraseña (o una llave) y luego lee la API / the board: asks for a sign-in, then reads the API."""
    settings = request.app.state.ctx.settings
    return render_login(settings.result_deadline_minutes, settings.hospital_result_deadlines)


def create_app(ctx: ServiceContext) -> FastAPI:
    """The FastAPI application over a service context (creates the security tables and the bootstrap key)."""
    app = FastAPI(
        title="Mexican Deep DICOM — API de estado / status API",
        version="0.1.0",
        description=DESCRIPTION,
    )
    app.state.ctx = ctx
    app.state.jwt_secret = jwt_secret(ctx.settings)
    init_db(ctx.engine, AUTH_TABLES)
    ensure_bootstrap_key(ctx.engine, ctx.settings)
    app.include_router(router)
    app.include_router(routes_auth.router)
    app.include_router(routes_studies.router)
    app.include_router(create_dicomweb_router(principal_hospitals, storing_hospitals))
    app.include_router(uploads.router)
    app.include_router(live.router)
    metrics.install(app, ctx.engine)
    board_pages.install(app)
    app.add_middleware(SecurityHeaders, settings=ctx.settings)
    if ctx.settings.cors_allow_origins:
        # A viewer on another origin (OHIF) sends a bearer token and multipart Accept headers, so it needs CORS.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ctx.settings.cors_allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Accept", "Content-Type"],
            expose_headers=["Warning", "Content-Location", "Content-Disposition"],
            max_age=600,
        )
    return app
