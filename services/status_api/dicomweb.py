"""DICOMweb para visores / DICOMweb for viewers (OHIF): STOW-RS, QIDO-RS and WADO-RS under ``/dicomweb``.

STOW-RS is forwarded to the ingest service (``dicomweb_stow``), so that a client stores, searches
and retrieves at one base URL.

Searches run on the DICOMweb index (``shared.instance_index``, written by ingest with each instance);
retrievals read the stored objects from the object store (bucket ``MDD_BUCKET_DICOM``), which are
served byte for byte as received. Frames: see ``dicomweb_wado`` (compressed as stored, or decoded
to native pixels when the client asks for plain ``application/octet-stream``).

Access control. ``create_dicomweb_router(principal_dependency)`` takes a FastAPI dependency that
returns the hospital ids the caller may see, or ``None`` for every hospital, e.g.::

    def allowed_hospitals(request: Request) -> set[str] | None: ...

FastAPI resolves it like any dependency (it may be ``async``, may take ``Request`` and other
dependencies, and may raise ``HTTPException(401/403)`` itself). Every route depends on it:
searches only find studies of those hospitals, and retrievals of other hospitals' studies answer
404 as if they did not exist. A UID is unique only within a hospital: a caller who sees several
hospitals narrows any search or retrieval to one with ``?hospital=``, so that two hospitals' studies
sharing a UID are never served as one. Without it nothing is restricted; the status API mounts it with
``principal_hospitals`` (bearer token; doctors see their hospitals, administrators all, other
roles get 403). DICOMweb returns patient identity (name, ID, birth date), which a viewer needs:
in production the router must sit behind authentication.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from shared.runtime import ServiceContext
from shared.store import ObjectNotFound
from services.status_api import dicomweb_openapi as api_doc
from services.status_api import dicomweb_stow as stow
from services.status_api import dicomweb_wado as wado
from shared.instance_index import RELATIVE_BULK_PREFIX, InstanceIndexRow
from services.status_api.dicomweb_qido import FUZZY_WARNING, Level, QueryError, parse_query, search
from services.status_api.security import Principal, audit, current_principal, storing_principal

PREFIX = "/dicomweb"
VOI_LUT_FUNCTION_TAG = "00281056"
Row = InstanceIndexRow
AllowedHospitals = Callable[..., "set[str] | None | Awaitable[set[str] | None]"]


def no_restriction() -> set[str] | None:
    """The default access rule: every hospital."""
    return None


def principal_hospitals(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> set[str] | None:
    """The status API's rule: signed-in doctors see their hospitals, administrators every one.

    DICOMweb shows patient identity, so other roles get 403 (providers receive de-identified
    copies through their offers instead). Every request is written to the audit log.
    """
    if not principal.sees_identity:
        raise HTTPException(403, "Sin permiso / forbidden: DICOMweb requiere / requires doctor o / or admin")
    audit(request, principal, "dicomweb", request.path_params.get("study"), request.url.path)
    return principal.hospital_scope


def storing_hospitals(
    request: Request, principal: Annotated[Principal, Depends(storing_principal)]
) -> set[str] | None:
    """The status API's rule for STOW-RS: doctors and uploaders store for their hospitals, administrators for any."""
    audit(request, principal, "dicomweb-store", request.path_params.get("study"), request.url.path)
    return principal.hospital_scope


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _scope(allowed: set[str] | None, **uids: str) -> list[ColumnElement[bool]]:
    columns = {"study": Row.study_uid, "series": Row.series_uid, "sop": Row.sop_instance_uid}
    conditions: list[ColumnElement[bool]] = [columns[name] == value for name, value in uids.items()]
    if allowed is not None:
        conditions.append(col(Row.hospital_id).in_(sorted(allowed)))
    return conditions


def _dicom_json(body: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return api_doc.DicomJSONResponse(body, headers=headers)


def _qido(request: Request, level: Level, scope: list[ColumnElement[bool]], with_study: bool) -> JSONResponse:
    try:
        query = parse_query(request.query_params.multi_items())
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from exc
    with Session(_ctx(request).engine) as session:
        found = search(session, level, query, _base_url(request), scope, with_study)
    warnings = []
    if query.ignored:
        names = ", ".join(query.ignored).replace('"', "'")
        warnings.append(f'299 mdd "No soportados / the following parameters were not supported: {names}"')
    if query.fuzzy_refused:
        warnings.append(f'299 mdd "{FUZZY_WARNING}"')
    return _dicom_json(found, {"Warning": ", ".join(warnings)} if warnings else None)


def _instances(request: Request, scope: Sequence[ColumnElement[bool]]) -> list[Row]:
    with Session(_ctx(request).engine) as session:
        rows = session.exec(
            select(Row)
            .where(*scope)
            .order_by(Row.series_number, Row.series_uid, Row.instance_number, Row.sop_instance_uid)
        ).all()
    if not rows:
        raise HTTPException(404, "No encontrado / not found")
    if len(hospitals := sorted({row.hospital_id for row in rows})) > 1:
        # Two hospitals' studies share these UIDs: never served as one.
        raise HTTPException(409, f"Los UID existen en varios hospitales ({', '.join(hospitals)}); indique ?hospital= /"
                                 f" the UIDs exist in several hospitals: give ?hospital=")
    return list(rows)


def _read(request: Request, row: Row) -> bytes:
    ctx = _ctx(request)
    try:
        return ctx.store.get_bytes(ctx.settings.bucket_dicom, row.object_key)
    except ObjectNotFound as exc:
        raise HTTPException(
            404, f"Objeto no encontrado en el almacén / object missing from the store: {row.sop_instance_uid}"
        ) from exc


def _instance_url(request: Request, row: Row) -> str:
    return f"{_base_url(request)}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_instance_uid}"


def _absolute_bulk(value: Any, instance_url: str) -> None:
    """Make the relative BulkDataURIs of stored metadata absolute, in sequences too."""
    if isinstance(value, dict):
        uri = value.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith((RELATIVE_BULK_PREFIX, "frames/")):
            value["BulkDataURI"] = f"{instance_url}/{uri}"
        for item in value.values():
            _absolute_bulk(item, instance_url)
    elif isinstance(value, list):
        for item in value:
            _absolute_bulk(item, instance_url)


def _without_default_voi_lut_function(metadata: dict[str, Any]) -> None:
    """Leave out VOI LUT Function (0028,1056) when it is LINEAR, which is what its absence means.

    OHIF 3.13 (cornerstone3D, upstream issue #2844) reads this value as a list and keeps its first
    letter, so any image that carries it renders black with "Invalid VOI LUT function". Dropping
    the default changes nothing for a correct viewer; SIGMOID and LINEAR_EXACT are kept as they are.
    """
    element = metadata.get(VOI_LUT_FUNCTION_TAG)
    if isinstance(element, dict) and [str(v).strip() for v in element.get("Value", [])] in ([], ["LINEAR"]):
        del metadata[VOI_LUT_FUNCTION_TAG]


def _metadata(request: Request, rows: Sequence[Row]) -> JSONResponse:
    answer = []
    for row in rows:
        metadata = copy.deepcopy(row.metadata_json)
        _absolute_bulk(metadata, _instance_url(request, row))
        _without_default_voi_lut_function(metadata)
        answer.append(metadata)
    return _dicom_json(answer)


def _retrieve(request: Request, rows: Sequence[Row]) -> StreamingResponse:
    """The instances, one part each, read from the store one at a time while streaming, each in the
    transfer syntax the client accepts (transcoded when that is not the stored one)."""
    try:
        syntaxes = [wado.instance_syntax(request.headers.get("accept"), row.transfer_syntax_uid) for row in rows]
    except wado.NotAcceptable as exc:
        raise HTTPException(406, str(exc)) from exc
    boundary = wado.new_boundary()

    def body() -> Iterator[bytes]:
        for row, syntax in zip(rows, syntaxes):
            content_type = f"{wado.DICOM}; transfer-syntax={syntax}"
            data = _read(request, row)
            if syntax != row.transfer_syntax_uid:
                data = wado.transcode(data, syntax, _ctx(request).settings.decode_max_bytes)
            yield wado.part(boundary, content_type, data, _instance_url(request, row))
        yield wado.closing(boundary)

    return StreamingResponse(body(), media_type=wado.multipart_content_type(wado.DICOM, boundary))


def _frame_numbers(raw: str, available: int) -> list[int]:
    try:
        numbers = [int(item) for item in raw.split(",") if item.strip()]
    except ValueError as exc:
        raise HTTPException(400, f"Números de cuadro inválidos / invalid frame numbers: {raw!r}") from exc
    if not numbers:
        raise HTTPException(400, "Faltan números de cuadro / frame numbers missing")
    if any(number < 1 or number > available for number in numbers):
        raise HTTPException(404, f"Cuadro fuera de rango / frame out of range (1..{available}): {raw}")
    return numbers


def create_dicomweb_router(
    principal_dependency: AllowedHospitals | None = None, store_dependency: AllowedHospitals | None = None
) -> APIRouter:
    """The DICOMweb routes under ``/dicomweb``: QIDO-RS and WADO-RS restricted by ``principal_dependency``,
    STOW-RS by ``store_dependency``."""
    seen_dependency = Depends(principal_dependency or no_restriction)

    def one_hospital(
        allowed: set[str] | None = seen_dependency,
        hospital: Annotated[str | None, Query(max_length=64, description="Solo este hospital / only this hospital")] = None,
    ) -> set[str] | None:
        if hospital is None:
            return allowed
        return {hospital} if allowed is None or hospital in allowed else set()

    allowed_dependency = Depends(one_hospital)
    storing_dependency = Depends(store_dependency or no_restriction)
    router = APIRouter(prefix=PREFIX, tags=["DICOMweb"])

    @router.post("/studies", response_class=api_doc.DicomJSONResponse, responses=api_doc.STOW)
    async def store_instances(
        request: Request, hospital: str | None = None, allowed: set[str] | None = storing_dependency
    ) -> Response:
        """STOW-RS: almacenar instancias / store instances (multipart/related; type="application/dicom")."""
        return await stow.forward_stow(request, _ctx(request), _base_url(request), None, stow.stow_hospital(allowed, hospital))

    @router.post("/studies/{study}", response_class=api_doc.DicomJSONResponse, responses=api_doc.STOW)
    async def store_study_instances(
        study: str, request: Request, hospital: str | None = None, allowed: set[str] | None = storing_dependency
    ) -> Response:
        """STOW-RS a un estudio / store instances of one study (others fail with 0xA900).

        The study is the storing hospital's: another hospital's study with the same UID is neither
        joined nor revealed."""
        return await stow.forward_stow(request, _ctx(request), _base_url(request), study, stow.stow_hospital(allowed, hospital))

    @router.get("/studies", response_class=api_doc.DicomJSONResponse, responses=api_doc.QIDO)
    def search_studies(request: Request, allowed: set[str] | None = allowed_dependency) -> JSONResponse:
        """QIDO-RS: buscar estudios / search for studies."""
        return _qido(request, "study", _scope(allowed), with_study=True)

    @router.get("/series", response_class=api_doc.DicomJSONResponse, responses=api_doc.QIDO)
    def search_all_series(request: Request, allowed: set[str] | None = allowed_dependency) -> JSONResponse:
        """QIDO-RS: buscar series de todos los estudios / search for series in every study."""
        return _qido(request, "series", _scope(allowed), with_study=True)

    @router.get("/instances", response_class=api_doc.DicomJSONResponse, responses=api_doc.QIDO)
    def search_all_instances(request: Request, allowed: set[str] | None = allowed_dependency) -> JSONResponse:
        """QIDO-RS: buscar instancias de todos los estudios / search for instances in every study."""
        return _qido(request, "instance", _scope(allowed), with_study=True)

    @router.get("/studies/{study}/series", response_class=api_doc.DicomJSONResponse, responses=api_doc.QIDO)
    def search_series(
        study: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """QIDO-RS: series de un estudio / a study's series."""
        return _qido(request, "series", _scope(allowed, study=study), with_study=False)

    @router.get(
        "/studies/{study}/instances", response_class=api_doc.DicomJSONResponse, responses=api_doc.QIDO
    )
    def search_study_instances(
        study: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """QIDO-RS: instancias de un estudio / a study's instances."""
        return _qido(request, "instance", _scope(allowed, study=study), with_study=False)

    @router.get(
        "/studies/{study}/series/{series}/instances",
        response_class=api_doc.DicomJSONResponse,
        responses=api_doc.QIDO,
    )
    def search_instances(
        study: str, series: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """QIDO-RS: instancias de una serie / a series' instances."""
        return _qido(request, "instance", _scope(allowed, study=study, series=series), with_study=False)

    @router.get(
        "/studies/{study}", response_class=api_doc.MultipartRelatedResponse, responses=api_doc.INSTANCES
    )
    def retrieve_study(
        study: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> StreamingResponse:
        """WADO-RS: todas las instancias del estudio / every instance of the study."""
        return _retrieve(request, _instances(request, _scope(allowed, study=study)))

    @router.get(
        "/studies/{study}/metadata", response_class=api_doc.DicomJSONResponse, responses=api_doc.METADATA
    )
    def study_metadata(
        study: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """WADO-RS: metadatos del estudio / study metadata (DICOM JSON, bulk data by URI)."""
        return _metadata(request, _instances(request, _scope(allowed, study=study)))

    @router.get(
        "/studies/{study}/series/{series}",
        response_class=api_doc.MultipartRelatedResponse,
        responses=api_doc.INSTANCES,
    )
    def retrieve_series(
        study: str, series: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> StreamingResponse:
        """WADO-RS: todas las instancias de la serie / every instance of the series."""
        return _retrieve(request, _instances(request, _scope(allowed, study=study, series=series)))

    @router.get(
        "/studies/{study}/series/{series}/metadata",
        response_class=api_doc.DicomJSONResponse,
        responses=api_doc.METADATA,
    )
    def series_metadata(
        study: str, series: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """WADO-RS: metadatos de la serie / series metadata."""
        return _metadata(request, _instances(request, _scope(allowed, study=study, series=series)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}",
        response_class=api_doc.MultipartRelatedResponse,
        responses=api_doc.INSTANCES,
    )
    def retrieve_instance(
        study: str, series: str, sop: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> StreamingResponse:
        """WADO-RS: la instancia tal como se guardó / the instance as stored."""
        return _retrieve(request, _instances(request, _scope(allowed, study=study, series=series, sop=sop)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/metadata",
        response_class=api_doc.DicomJSONResponse,
        responses=api_doc.METADATA,
    )
    def instance_metadata(
        study: str, series: str, sop: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> JSONResponse:
        """WADO-RS: metadatos de la instancia / instance metadata."""
        return _metadata(request, _instances(request, _scope(allowed, study=study, series=series, sop=sop)))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{numbers}",
        response_class=api_doc.MultipartRelatedResponse,
        responses=api_doc.FRAMES,
    )
    def retrieve_frames(
        study: str,
        series: str,
        sop: str,
        numbers: str,
        request: Request,
        allowed: set[str] | None = allowed_dependency,
    ) -> Response:
        """WADO-RS: cuadros de la instancia / instance frames (``1`` or ``1,3,5``)."""
        [row] = _instances(request, _scope(allowed, study=study, series=series, sop=sop))
        wanted = _frame_numbers(numbers, row.number_of_frames)
        try:
            choice = wado.choose_frame_representation(request.headers.get("accept"), row.transfer_syntax_uid)
        except wado.NotAcceptable as exc:
            raise HTTPException(406, str(exc)) from exc
        try:
            content = wado.frames(_read(request, row), wanted, choice, _ctx(request).settings.decode_max_bytes)
        except wado.DecodeBudgetExceeded as exc:
            raise HTTPException(413, str(exc)) from exc
        boundary = wado.new_boundary()
        body = b"".join(
            wado.multipart_body(boundary, [(choice.part_content_type, frame) for frame in content])
        )
        return Response(body, media_type=wado.multipart_content_type(choice.part_type, boundary))

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}",
        response_class=api_doc.MultipartRelatedResponse,
        responses=api_doc.BULKDATA,
    )
    def retrieve_bulkdata(
        study: str,
        series: str,
        sop: str,
        tag: str,
        request: Request,
        allowed: set[str] | None = allowed_dependency,
    ) -> Response:
        """WADO-RS: un valor binario grande del encabezado / one large binary header value."""
        [row] = _instances(request, _scope(allowed, study=study, series=series, sop=sop))
        ds = pydicom.dcmread(io.BytesIO(_read(request, row)), stop_before_pixels=True)
        try:
            value = ds[int(tag, 16)].value
        except (KeyError, ValueError) as exc:
            raise HTTPException(404, f"Elemento no encontrado / element not found: {tag}") from exc
        if not isinstance(value, bytes):
            raise HTTPException(404, f"El elemento no es binario / element is not bulk data: {tag}")
        boundary = wado.new_boundary()
        return Response(
            b"".join(wado.multipart_body(boundary, [(wado.OCTET_STREAM, value)])),
            media_type=wado.multipart_content_type(wado.OCTET_STREAM, boundary),
        )

    @router.get(
        "/studies/{study}/series/{series}/instances/{sop}/rendered",
        response_class=api_doc.RenderedResponse,
        responses=api_doc.RENDERED,
    )
    def rendered_instance(
        study: str, series: str, sop: str, request: Request, allowed: set[str] | None = allowed_dependency
    ) -> Response:
        """WADO-RS: la imagen para mostrar (primer cuadro, ventana VOI) / the image for display."""
        [row] = _instances(request, _scope(allowed, study=study, series=series, sop=sop))
        try:
            media_type = wado.choose_rendered_type(request.headers.get("accept"))
        except wado.NotAcceptable as exc:
            raise HTTPException(406, str(exc)) from exc
        try:
            rendered = wado.render(_read(request, row), media_type, _ctx(request).settings.decode_max_bytes)
        except wado.DecodeBudgetExceeded as exc:
            raise HTTPException(413, str(exc)) from exc
        return Response(rendered, media_type=media_type)

    return router
