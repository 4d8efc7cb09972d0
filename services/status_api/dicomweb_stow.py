"""STOW-RS on the status API's ``/dicomweb`` root: one base URL for searching, retrieving and storing.

The API authenticates the caller (roles that store: doctor, uploader, admin), decides the hospital the instances
belong to (the caller's only hospital; ``?hospital=`` when it has several; the ingest's rule for an
administrator), and forwards the body, streamed, to the ingest service's STOW-RS
(``MDD_INGEST_URL``), which stores them exactly as a C-STORE would. The answer (PS3.18 10.5.3)
comes back unchanged but for its Retrieve URLs, which point at this API.
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import Response

from shared.ingest_doors import DICOMWEB_ROOT_HEADER
from shared.runtime import ServiceContext
from shared.object_keys import hospital_problem
from services.status_api.ingest_forward import forward_to_ingest


def stow_hospital(allowed: set[str] | None, requested: str | None) -> str | None:
    """The hospital stored instances go to; ``None`` lets the ingest decide (administrators)."""
    if requested and (problem := hospital_problem(requested)):
        raise HTTPException(400, problem)
    if allowed is None:
        return requested or None
    if requested:
        if requested not in allowed:
            raise HTTPException(403, f"Sin permiso para / not allowed to store for {requested}")
        return requested
    if len(allowed) == 1:
        return next(iter(allowed))
    if not allowed:
        raise HTTPException(403, "Sin hospital asignado / no hospital assigned")
    raise HTTPException(400, f"Indique ?hospital= entre / name ?hospital= among: {', '.join(sorted(allowed))}")


async def forward_stow(request: Request, ctx: ServiceContext, dicomweb_root: str, study_uid: str | None, hospital_id: str | None) -> Response:
    """Send the STOW-RS request to ingest and return its answer, Retrieve URLs pointing at ``dicomweb_root``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related") or "boundary=" not in content_type.lower():
        raise HTTPException(415, 'Se espera multipart/related; type="application/dicom"; boundary=… / expected multipart/related')
    path = "/dicomweb/studies" + (f"/{study_uid}" if study_uid else "")
    return await forward_to_ingest(request, ctx, path, hospital_id, {DICOMWEB_ROOT_HEADER: dicomweb_root})
