"""The isolation matrix: every route of the status API's OpenAPI schema, called by every role, against a study
of the caller's own hospital and one of another hospital, through a real uvicorn server.

The table below is the matrix (docs/security.md shows the same one). Columns are the roles of
``auth_tables.ROLES`` plus anonymous: a new role fails the test until it has a column, a new route
until it has a row. Outcomes: ``ok`` the route's success status, ``401``/``403``, ``404`` (another
hospital's study answers as if it did not exist), ``none`` (a search that finds nothing: 204 or an
empty list). Every answer a non-administrator gets is also checked for the other hospital's data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from sqlmodel import Session

from services.status_api.auth_tables import ROLES, AssignmentRow
from services.status_api.tables import StudyRow
from shared.events import utc_now
from shared.runtime import WebComponent, WebLimits
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.unit.test_status_api_auth import ADMIN, World

pytestmark = pytest.mark.integration

COLUMNS = ("admin", "hospital_staff", "doctor", "provider", "uploader", "anonymous")


@dataclass(frozen=True)
class Row:
    """One route: its success status, and the outcome per column for the caller's own study and another hospital's."""

    success: int
    own: str
    other: str | None = None  # None: the route names no study


# Routes without a study list or search across hospitals: their answers are scoped (checked for B's data).
MATRIX: dict[tuple[str, str], Row] = {
    #                                                                       admin staff doctor provider uploader anonymous
    ("GET", "/healthz"):                                             Row(200, "ok  ok   ok   ok      ok   ok"),
    ("POST", "/auth/token"):                                         Row(200, "ok  ok   ok   ok      ok   ok"),
    ("GET", "/auth/me"):                                             Row(200, "ok  ok   ok   ok      403  401"),
    ("GET", "/audit"):                                               Row(200, "ok  403  403  403     403  401"),
    ("GET", "/studies"):                                             Row(200, "ok  ok   ok   ok      403  401"),
    ("GET", "/studies/{study_uid}"):                                 Row(200, "ok  ok   ok   ok      403  401",
                                                                              "ok  404  404  404     403  401"),
    ("GET", "/studies/{study_uid}/images/{sop_instance_uid}/{kind}"): Row(200, "ok  ok   ok   ok      403  401",
                                                                              "ok  404  404  404     403  401"),
    ("GET", "/studies/{study_uid}/mosaic"):                          Row(200, "ok  ok   ok   ok      403  401",
                                                                              "ok  404  404  404     403  401"),
    ("GET", "/studies/{study_uid}/notifications"):                   Row(200, "ok  ok   ok   ok      403  401",
                                                                              "ok  404  404  404     403  401"),
    ("GET", "/notifications"):                                       Row(200, "ok  ok   ok   ok      403  401"),
    ("POST", "/studies/{study_uid}/report"):                         Row(202, "ok  403  ok   ok      403  401",
                                                                              "ok  403  404  404     403  401"),
    ("POST", "/studies/{study_uid}/assignments"):                    Row(201, "ok  403  403  403     403  401",
                                                                              "ok  403  403  403     403  401"),
    # STOW-RS is probed without a multipart body: 415 shows the caller got past authorisation.
    ("POST", "/dicomweb/studies"):                                   Row(415, "ok  403  ok   403     ok   401"),
    # Storing under another hospital's UID makes the caller's own study: it never joins the other's.
    ("POST", "/dicomweb/studies/{study}"):                           Row(415, "ok  403  ok   403     ok   401",
                                                                              "ok  403  ok   403     ok   401"),
    ("GET", "/dicomweb/studies"):                                    Row(200, "ok  403  ok   403     403  401"),
    ("GET", "/dicomweb/series"):                                     Row(200, "ok  403  ok   403     403  401"),
    ("GET", "/dicomweb/instances"):                                  Row(200, "ok  403  ok   403     403  401"),
    ("GET", "/dicomweb/studies/{study}"):                            Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series"):                     Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  none 403     403  401"),
    ("GET", "/dicomweb/studies/{study}/instances"):                  Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  none 403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"):  Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  none 403     403  401"),
    ("GET", "/dicomweb/studies/{study}/metadata"):                   Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}"):            Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/metadata"):   Row(200, "ok  403  ok   403     403  401",
                                                                              "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}"): Row(200, "ok  403  ok   403     403  401",
                                                                                   "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata"): Row(200, "ok  403  ok   403     403  401",
                                                                                            "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{numbers}"): Row(
        200, "ok  403  ok   403     403  401", "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}"): Row(
        200, "ok  403  ok   403     403  401", "ok  403  404  403     403  401"),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered"): Row(200, "ok  403  ok   403     403  401",
                                                                                            "ok  403  404  403     403  401"),
    # A ZIP upload probed with a JSON body: 415 shows the caller got past authorisation.
    ("POST", "/uploads"):                                            Row(415, "ok  403  ok   403     ok   401"),
    ("GET", "/events"):                                              Row(200, "ok  ok   ok   ok      403  401"),
}
# Routes kept out of the schema (scrapers and the board's HTML), held to the same matrix.
OUTSIDE_SCHEMA: dict[tuple[str, str], Row] = {
    ("GET", "/metrics"):                                             Row(200, "ok  403  403  403     403  401"),
    ("GET", "/board/table"):                                         Row(200, "ok  ok   ok   ok      403  401"),
}
BODIES = {"/studies/{study_uid}/report": {"birads": 2, "text": "Benigno"},
          "/studies/{study_uid}/assignments": {"provider_id": "OTRO-LECTOR"}}


def outcomes(cells: str) -> dict[str, str]:
    """A row's cells by column."""
    values = cells.split()
    assert len(values) == len(COLUMNS), cells
    return dict(zip(COLUMNS, values))


def seen_as(status: int, body: bytes, success: int, target: str) -> str:
    """The outcome an answer shows; an empty answer to a search in another hospital's study is ``none``."""
    if status == 204 or (target == "other" and status == 200 and body.strip() in (b"[]", b"")):
        return "none"
    return "ok" if status == success else str(status)


async def call(client: httpx.AsyncClient, method: str, path: str, template: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request; an endless stream is read up to its first event."""
    if template == "/events":
        async with client.stream(method, path, headers=headers) as response:
            first = b""
            if response.status_code == 200:
                async for chunk in response.aiter_bytes():
                    first += chunk
                    if b"\n\n" in first:
                        break
            else:
                first = await response.aread()
            return response.status_code, first
    if template == "/auth/token":
        response = await client.post(path, data={"username": "doctor_a", "password": "contraseña-segura-1"}, headers=headers)
    else:
        response = await client.request(method, path, json=BODIES.get(template), headers=headers)
    return response.status_code, response.content


def prepare(world: World, study: SyntheticStudy) -> dict[str, dict[str, str]]:
    """Give both studies derived images and a mosaic, assign A to the provider; the path values of A and B."""
    settings, store = world.app.state.ctx.settings, world.app.state.ctx.store
    dataset = study.views[0].dataset
    values = {
        "own": {"study_uid": world.study_a, "study": world.study_a, "series": str(dataset.SeriesInstanceUID),
                "sop": str(dataset.SOPInstanceUID), "sop_instance_uid": str(dataset.SOPInstanceUID)},
        "other": {"study_uid": world.study_b, "study": world.study_b, "series": world.uids_b["series"],
                  "sop": world.uids_b["sop"], "sop_instance_uid": world.uids_b["sop"]},
    }
    with Session(world.engine) as session:
        for target, hospital in (("own", "HOSP-A"), ("other", "HOSP-B")):
            uids = values[target]
            uids.update(kind="crop", numbers="1", tag="00420011")
            row = session.get(StudyRow, (hospital, uids["study"]))
            assert row is not None
            crop_key = f"{hospital}/{uids['study']}/crop.png"
            store.put_bytes(settings.bucket_derived, crop_key, b"\x89PNG-recorte", "image/png")
            row.derived_views = [{"sop_instance_uid": uids["sop"], "crop_key": crop_key}]
            session.add(row)
            dicom_key = f"{hospital}/{uids['study']}/{uids['series']}/{uids['sop']}.dcm"
            stored = pydicom.dcmread(io.BytesIO(store.get_bytes(settings.bucket_dicom, dicom_key)))
            stored.add_new(0x00420011, "OB", b"%PDF-1.4 documento")  # Encapsulated Document: bulk data to retrieve
            buffer = io.BytesIO()
            stored.save_as(buffer, enforce_file_format=True)
            store.put_bytes(settings.bucket_dicom, dicom_key, buffer.getvalue(), "application/dicom")
            store.put_bytes(settings.bucket_results, f"{hospital}/{uids['study']}/overlay.dcm", buffer.getvalue(), "application/dicom")
        session.add(AssignmentRow(hospital_id="HOSP-A", study_uid=world.study_a, provider_id="LECTURA-1", assigned_by="bootstrap", assigned_at=utc_now()))
        session.commit()
    return values


def matrix_table() -> str:
    """The matrix as the Markdown table docs/security.md shows: "own · other hospital" in each cell."""
    lines = ["| ruta / route | éxito / success | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for (method, template), row in {**MATRIX, **OUTSIDE_SCHEMA}.items():
        own, other = outcomes(row.own), outcomes(row.other) if row.other else None
        cells = [own[column] + (f" · {other[column]}" if other else "") for column in COLUMNS]
        lines.append(f"| `{method} {template}` | {row.success} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_docs_show_the_matrix_the_test_asserts() -> None:
    security = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert matrix_table() in security, "regenere la tabla / regenerate the table: matrix_table()"


def fill(template: str, values: dict[str, str]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"parámetro sin valor de prueba / untested path parameter in {template}"
    return path


async def test_every_route_with_every_role_matches_the_isolation_matrix(settings: Settings, four_view_study: SyntheticStudy) -> None:
    assert set(COLUMNS) == {*ROLES, "anonymous"}, "a role without a column in the matrix / un rol sin columna"
    world = World(settings, four_view_study)
    schema_routes = {(method.upper(), path) for path, operations in world.app.openapi()["paths"].items() for method in operations}
    assert schema_routes == set(MATRIX), (
        f"rutas sin fila / routes without a row: {sorted(schema_routes - set(MATRIX))}; "
        f"filas sin ruta / rows without a route: {sorted(set(MATRIX) - schema_routes)}")
    values = prepare(world, four_view_study)
    headers = {"admin": ADMIN, "hospital_staff": world.token("staff_a"), "doctor": world.token("doctor_a"),
               "provider": world.token("lector"), "uploader": world.token("carga_a"), "anonymous": {}}
    server = WebComponent(world.app, "127.0.0.1", settings.api_port, limits=WebLimits.of_api(settings))
    await server.start()
    wrong: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30) as client:
            for (method, template), row in {**MATRIX, **OUTSIDE_SCHEMA}.items():
                targets = [("own", row.own)] + ([("other", row.other)] if row.other else [])
                for target, cells in targets:
                    path = fill(template, values[target])
                    for column, expected in outcomes(cells).items():
                        status, body = await call(client, method, path, template, headers[column])
                        seen = seen_as(status, body, row.success, target)
                        if seen != expected:
                            wrong.append(f"{method} {template} [{target}] {column}: {expected} esperado / expected, "
                                         f"{status} {body[:120]!r}")
                        if column not in ("admin", "anonymous") and seen == "ok":
                            for leak in (world.study_b, "ACC-B", "HOSPITAL B", "HOSP-B"):
                                if leak.encode() in body:
                                    wrong.append(f"{method} {template} [{target}] {column}: muestra / shows {leak}")
    finally:
        await server.stop()
    assert not wrong, "\n".join(wrong)
