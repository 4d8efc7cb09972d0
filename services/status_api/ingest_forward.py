"""Requests the status API authenticated, forwarded to ingest's HTTP doors (shared/ingest_doors.py).

The body is streamed as it arrives; the answer comes back as ingest gave it. Ingest believes the
hospital header only because the request carries ``MDD_INGEST_HTTP_TOKEN``.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import HTTPException, Request
from fastapi.responses import Response

from shared.ingest_doors import HOSPITAL_HEADER, STORED_BY_HEADER
from shared.local_secrets import ingest_http_token
from shared.runtime import ServiceContext

log = logging.getLogger("mdd.status_api.ingest")
TIMEOUT = httpx.Timeout(300.0, connect=10.0)
PASSED_ON = ("retry-after",)


async def forward_to_ingest(
    request: Request, ctx: ServiceContext, path: str, hospital_id: str | None, headers: dict[str, str] | None = None
) -> Response:
    """POST the request's body to ingest at ``path`` for ``hospital_id`` and return ingest's answer."""
    principal = getattr(request.state, "principal", None)
    sent = {
        "content-type": request.headers.get("content-type", ""),
        "authorization": f"Bearer {ingest_http_token(ctx.settings)}",
        STORED_BY_HEADER: f"{principal.kind}:{principal.name}" if principal else "",
        **(headers or {}),
    }
    if hospital_id:
        sent[HOSPITAL_HEADER] = hospital_id
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answer = await client.post(f"{ctx.settings.resolved_ingest_url}{path}", content=request.stream(), headers=sent)
    except httpx.HTTPError as exc:
        log.error("Ingesta no disponible / ingest unreachable: %r", exc)
        raise HTTPException(503, "Ingesta no disponible; reintente / ingest unavailable, retry",
                            headers={"Retry-After": "30"}) from exc
    if answer.status_code == 401:  # the two services hold different tokens: the operator must fix it, not the caller
        log.error("La ingesta no reconoce MDD_INGEST_HTTP_TOKEN de la API / ingest refuses the API's MDD_INGEST_HTTP_TOKEN")
        raise HTTPException(503, "Ingesta mal configurada (token) / ingest misconfigured (token); avise a TI / tell IT")
    passed = {name: answer.headers[name] for name in PASSED_ON if name in answer.headers}
    return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"),
                    headers=passed)
