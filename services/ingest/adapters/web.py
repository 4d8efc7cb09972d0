"""HTTP front doors of ingest: DICOMweb STOW-RS and ZIP upload (FastAPI)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from shared.ingest_doors import DICOMWEB_ROOT_HEADER, HOSPITAL_HEADER, STORED_BY_HEADER, zip_media_type_problem
from shared.dicom_vocabulary import DimseStatus
from shared.local_secrets import ingest_http_token
from shared.reliability.health import HealthReport, health_report
from services.ingest.admission import admit_space, free_space
from services.ingest.intake import Ingest, read_header
from services.ingest.stow import (
    PROCESSING_FAILURE,
    BodyTooLarge,
    MultipartError,
    Part,
    PartReader,
    StoredItem,
    boundary_of,
    http_status,
    store_response,
)
from services.ingest.validation import InstanceTooLarge
from services.ingest.uploads import UploadRefused, UploadReport, ZipLimits, ingest_zip

DICOM_JSON = "application/dicom+json"
STOW_CALLING_AE = "STOW-RS"
# Only the status API forwards here (shared/ingest_doors.py): without its token nothing is accepted, so no
# web page can post here either (an Authorization header never crosses origins without a preflight, which
# this app does not answer).
UPLOAD_CALLING_AE = "ZIP-UPLOAD"
RETRY_AFTER_SECONDS = 60
DATASET_DOES_NOT_MATCH = DimseStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
CANNOT_UNDERSTAND = DimseStatus.CANNOT_UNDERSTAND
OUT_OF_RESOURCES = DimseStatus.OUT_OF_RESOURCES
CHUNK_BYTES = 1024 * 1024


def _ingest(request: Request) -> Ingest:
    return request.app.state.ingest  # type: ignore[no-any-return]


def _forwarded_by_the_api(request: Request) -> None:
    expected = ingest_http_token(_ingest(request).settings)
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise HTTPException(
            401,
            "Se almacena a través de la API de estado (/uploads, /dicomweb) con su usuario o llave"
            " / store through the status API (/uploads, /dicomweb) with your user or key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _room_to_receive(request: Request) -> None:
    settings = _ingest(request).settings
    decision = admit_space(settings, free_space(settings))
    if not decision.accepted:  # as C-STORE's association is rejected-transient: come back later
        raise HTTPException(503, decision.reason, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


log = logging.getLogger("mdd.ingest.web")
router = APIRouter()
doors = APIRouter(dependencies=[Depends(_forwarded_by_the_api), Depends(_room_to_receive)])


def _store_part(ingest: Ingest, part: Part, base_url: str, study_uid: str | None, hospital_id: str | None) -> StoredItem:
    if part.oversize or part.path is None:
        return StoredItem("", "", failure_reason=OUT_OF_RESOURCES)
    try:
        header = read_header(part.path, ingest.limits)
    except InstanceTooLarge:
        return StoredItem("", "", failure_reason=OUT_OF_RESOURCES)
    except LookupError:
        return StoredItem("", "", failure_reason=DATASET_DOES_NOT_MATCH)
    except ValueError:
        return StoredItem("", "", failure_reason=CANNOT_UNDERSTAND)
    if study_uid and header.study_uid != study_uid:
        return StoredItem(header.sop_class_uid, header.sop_instance_uid, failure_reason=DATASET_DOES_NOT_MATCH)
    outcome = ingest.accept(part.path, calling_ae=STOW_CALLING_AE, hospital_id=hospital_id)
    if not outcome.ok:
        return StoredItem(header.sop_class_uid, header.sop_instance_uid, failure_reason=outcome.status or PROCESSING_FAILURE)
    url = f"{base_url}/studies/{header.study_uid}/series/{header.series_uid}/instances/{header.sop_instance_uid}"
    return StoredItem(header.sop_class_uid, header.sop_instance_uid, retrieve_url=url)


STOW_BODY = ("El cuerpo", "the body", "MDD_STOW_MAX_BODY_BYTES")
ZIP_BODY = ("El ZIP", "the ZIP", "MDD_UPLOAD_MAX_TOTAL_BYTES")


def _too_large(limit: int, body: tuple[str, str, str]) -> HTTPException:
    spanish, english, setting = body
    return HTTPException(413, f"{spanish} excede {limit} bytes ({setting}) / {english} exceeds {limit} bytes")


def _refuse_declared_over(request: Request, limit: int, body: tuple[str, str, str]) -> None:
    """413 before a byte is read when the Content-Length already says the body is over ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, body)


async def _spool_parts(request: Request, reader: PartReader, limit: int) -> list[Part]:
    """Parse the body as it arrives, each part to its spool file; 413 past ``limit``, 400 when malformed."""
    _refuse_declared_over(request, limit, STOW_BODY)
    try:
        async for chunk in request.stream():
            reader.feed(chunk)
        return reader.finish()
    except BodyTooLarge as exc:
        raise _too_large(limit, STOW_BODY) from exc
    except MultipartError as exc:
        raise HTTPException(400, f"Cuerpo multipart inválido / invalid multipart body: {exc}") from exc


async def _stow(request: Request, study_uid: str | None) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise HTTPException(415, "Se espera multipart/related; type=\"application/dicom\" / expected multipart/related")
    if 'type="application/dicom"' not in content_type.replace("'", '"') and "type=application/dicom" not in content_type:
        raise HTTPException(415, 'Solo type="application/dicom" / only type="application/dicom" is supported')
    try:
        boundary = boundary_of(content_type)
    except MultipartError as exc:
        raise HTTPException(400, f"Cuerpo multipart inválido / invalid multipart body: {exc}") from exc
    base_url = request.headers.get(DICOMWEB_ROOT_HEADER) or str(request.base_url).rstrip("/") + "/dicomweb"
    hospital_id = request.headers.get(HOSPITAL_HEADER) or None
    ingest = _ingest(request)
    settings = ingest.settings
    settings.resolved_spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mdd-stow-", dir=settings.resolved_spool_dir) as folder:
        reader = PartReader(boundary, Path(folder), settings.stow_max_body_bytes, settings.instance_max_bytes)
        try:
            items = []
            for part in await _spool_parts(request, reader, settings.stow_max_body_bytes):
                if not part.headers.get("content-type", "application/dicom").lower().startswith("application/dicom"):
                    items.append(StoredItem("", "", failure_reason=CANNOT_UNDERSTAND))
                    continue
                items.append(await asyncio.to_thread(_store_part, ingest, part, base_url, study_uid, hospital_id))
        finally:
            reader.close()
    study_url = f"{base_url}/studies/{study_uid}" if study_uid else None
    return JSONResponse(store_response(items, study_url), status_code=http_status(items), media_type=DICOM_JSON)


@doors.post("/dicomweb/studies", tags=["DICOMweb"])
async def stow_studies(request: Request) -> JSONResponse:
    """STOW-RS: almacena instancias / store instances (multipart/related; type="application/dicom")."""
    return await _stow(request, None)


@doors.post("/dicomweb/studies/{study_uid}", tags=["DICOMweb"])
async def stow_study(study_uid: str, request: Request) -> JSONResponse:
    """STOW-RS a un estudio: instancias de otro estudio se rechazan / instances of another study fail."""
    return await _stow(request, study_uid)


@doors.post("/uploads", response_model=UploadReport, tags=["cargas / uploads"])
async def upload_zip(request: Request) -> UploadReport:
    """Carga un ZIP de archivos DICOM (carpetas, DICOMDIR y basura incluidos) / upload a ZIP of DICOM files.

    Send the archive as the body (`Content-Type: application/zip`) or as a form field named `file`.
    Forwarded by the status API's ``/uploads``, which names the hospital.
    """
    problem = zip_media_type_problem(request.headers.get("content-type", ""))
    if problem:
        raise HTTPException(415, problem)
    ingest = _ingest(request)
    hospital_id = request.headers.get(HOSPITAL_HEADER) or None
    log.info("Carga ZIP de / ZIP upload by %s para / for %s", request.headers.get(STORED_BY_HEADER, "?"), hospital_id)
    with tempfile.TemporaryDirectory(prefix="mdd-upload-", dir=ingest.settings.resolved_spool_dir) as folder:
        archive = Path(folder) / "upload.zip"
        content_type = request.headers.get("content-type", "")
        limit = ingest.settings.upload_max_total_bytes
        _refuse_declared_over(request, limit, ZIP_BODY)
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, "Falta el campo 'file' con el ZIP / missing form field 'file'")
            with open(archive, "wb") as handle:
                while chunk := await upload.read(CHUNK_BYTES):
                    handle.write(chunk)
        else:
            received = 0
            with open(archive, "wb") as handle:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:  # chunked, without a Content-Length to judge it by
                        raise _too_large(limit, ZIP_BODY)
                    handle.write(chunk)
        limits = ZipLimits.from_settings(ingest.settings)
        try:
            return await asyncio.to_thread(
                ingest_zip, archive, lambda data: ingest.accept(data, calling_ae=UPLOAD_CALLING_AE, hospital_id=hospital_id), limits
            )
        except zipfile.BadZipFile as exc:
            raise HTTPException(400, f"El archivo no es un ZIP válido / not a valid ZIP: {exc}") from exc
        except UploadRefused as exc:
            raise HTTPException(exc.status_code, exc.reason) from exc


@router.get("/healthz", response_model=HealthReport, tags=["salud / health"])
def healthz(request: Request) -> HealthReport:
    """Vivo y qué dependencia falta / alive, and which dependency is down."""
    return health_report(_ingest(request).engine, True)


def create_ingest_app(ingest: Ingest) -> FastAPI:
    """The ingest web application over an ``Ingest``."""
    app = FastAPI(title="Mexican Deep DICOM — ingesta / ingest", version="0.1.0")
    app.state.ingest = ingest
    app.include_router(doors)
    app.include_router(router)
    return app
