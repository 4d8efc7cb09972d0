"""STOW-RS on the status API's ``/dicomweb`` root: one base URL for searching, retrieving and storing.

The API authenticates the caller as for QIDO-RS and WADO-RS, decides the hospital the instances
belong to (the caller's only hospital; ``?hospital=`` when it has several; the ingest's rule for an
administrator), and forwards the body, streamed, to the ingest service's STOW-RS
(``MDD_INGEST_URL``), which stores them exactly as a C-STORE would. The answer (PS3.18 10.5.3)
comes back unchanged but for its Retrieve URLs, which point at this API.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import HTTPException, Request
from fastapi.responses import Response

from shared.dicom_network import STOW_DICOMWEB_ROOT_HEADER, STOW_HOSPITAL_HEADER
from shared.runtime import ServiceContext

log = logging.getLogger("mdd.status_api.dicomweb")
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def stow_hospital(allowed: set[str] | None, requested: str | None) -> str | None:
    """The hospital stored instances go to; ``None`` lets the ingest decide (administrators)."""
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
    """Send the STOW-RS request to ingest and return its answer, Retrieve URLs rewritten to ``dicomweb_root``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related") or "boundary=" not in content_type.lower():
        raise HTTPException(415, 'Se espera multipart/related; type="application/dicom"; boundary=… / expected multipart/related')
    target = f"{ctx.settings.resolved_ingest_url}/dicomweb/studies" + (f"/{study_uid}" if study_uid else "")
    headers = {"content-type": request.headers.get("content-type", ""), STOW_DICOMWEB_ROOT_HEADER: dicomweb_root}
    if hospital_id:
        headers[STOW_HOSPITAL_HEADER] = hospital_id
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answer = await client.post(target, content=request.stream(), headers=headers)
    except httpx.HTTPError as exc:
        log.error("Ingesta no disponible para STOW-RS / ingest unreachable: %r", exc)
        raise HTTPException(503, "Ingesta no disponible; reintente / ingest unavailable, retry") from exc
    return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))
