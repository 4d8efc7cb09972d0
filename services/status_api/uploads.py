"""``POST /uploads``: a ZIP of DICOM files (a patient's CD, a folder export) for one hospital.

Authenticated as the rest of the API: doctors, uploaders (write-only keys for CD stations and
gateways) and administrators store for the hospitals of their scope. The archive is streamed to
ingest's ZIP door, which stores every instance as a C-STORE would and answers a per-file report.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from shared.ingest_doors import zip_media_type_problem
from shared.runtime import ServiceContext
from services.status_api.dicomweb_stow import stow_hospital
from services.status_api.ingest_forward import forward_to_ingest
from services.status_api.security import Principal, audit_async, storing_principal

router = APIRouter(tags=["cargas / uploads"])


@router.post(
    "/uploads",
    responses={
        200: {"description": "Reporte por archivo / per-file report (stored, duplicate, skipped, failed)"},
        400: {"description": "No es un ZIP / not a ZIP, o falta ?hospital= / or ?hospital= missing"},
        403: {"description": "Rol o hospital no permitido / role or hospital not allowed"},
        415: {"description": "Ni application/zip ni multipart/form-data"},
        503: {"description": "Ingesta no disponible o sin espacio (Retry-After) / ingest down or out of space"},
    },
)
async def upload_zip(
    request: Request, principal: Annotated[Principal, Depends(storing_principal)], hospital: str | None = None
) -> Response:
    """Carga un ZIP de archivos DICOM para un hospital / upload a ZIP of DICOM files for one hospital.

    Body: the archive (`Content-Type: application/zip`) or a form field `file`. `?hospital=` when the
    caller stores for several hospitals.
    """
    problem = zip_media_type_problem(request.headers.get("content-type", ""))
    if problem:
        raise HTTPException(415, problem)
    hospital_id = stow_hospital(principal.hospital_scope, hospital)
    ctx: ServiceContext = request.app.state.ctx
    await audit_async(request, principal, "upload", None, f"hospital={hospital_id or '-'}")
    return await forward_to_ingest(request, ctx, "/uploads", hospital_id)
