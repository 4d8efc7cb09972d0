"""Storing over HTTP is authenticated as reading is: ZIP uploads and STOW-RS through the status API only.

Ingest's HTTP port takes nothing without the API's token (a web page cannot post to it), the API lets
only the roles that store through, for their hospitals, and free space is checked as for C-STORE.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from shared.runtime import ServiceContext, build_context
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from services.ingest.__main__ import IngestComponent
from services.status_api.__main__ import register as register_status_api
from services.status_api.security import create_api_key

HOSPITAL, OTHER = "HGE-ENSENADA", "HG-TIJUANA"


@dataclass
class Doors:
    ctx: ServiceContext
    api: str
    ingest: str
    keys: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def stored(self) -> list[dict]:
        return [json.loads(p) for topic, p in self.ctx.bus.sent if topic == "mdd.instance.stored"]  # type: ignore[attr-defined]


@asynccontextmanager
async def doors_open(settings: Settings) -> AsyncIterator[Doors]:
    ctx = build_context(settings)
    ingest, web = IngestComponent(ctx), register_status_api(ctx)
    keys = {
        "uploader": create_api_key(ctx.engine, "estacion-cd", "uploader", [HOSPITAL]),
        "uploader_both": create_api_key(ctx.engine, "pasarela", "uploader", [HOSPITAL, OTHER]),
        "doctor": create_api_key(ctx.engine, "radiologia", "doctor", [HOSPITAL]),
        "staff": create_api_key(ctx.engine, "recepcion", "hospital_staff", [HOSPITAL]),
        "provider": create_api_key(ctx.engine, "proveedor", "provider", [], provider_id="acme"),
    }
    await ctx.bus.start()
    await ingest.start()
    await web.start()
    try:
        yield Doors(ctx, f"http://127.0.0.1:{settings.api_port}", f"http://127.0.0.1:{settings.ingest_http_port}", keys)
    finally:
        await web.stop()
        await ingest.stop()
        await ctx.bus.stop()
        ctx.engine.dispose()


def zip_of(study: SyntheticStudy) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, view in enumerate(study.views):
            archive.writestr(f"ESTUDIO/IM{index:04d}", view.to_bytes())
    return buffer.getvalue()


def stow_body(study: SyntheticStudy, boundary: str = "mdd") -> bytes:
    parts = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + v.to_bytes() + b"\r\n" for v in study.views)
    return parts + f"--{boundary}--\r\n".encode()


STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=mdd'
ZIP = {"Content-Type": "application/zip"}


async def test_ingest_http_doors_take_nothing_without_the_api_token(settings: Settings) -> None:
    study = make_study(seed=15_201, hospital_id=HOSPITAL)
    async with doors_open(settings) as doors, httpx.AsyncClient(base_url=doors.ingest, timeout=60) as http:
        anonymous = await http.post("/uploads", content=zip_of(study), headers=ZIP)
        forged = await http.post("/uploads", content=zip_of(study), headers={**ZIP, "Authorization": "Bearer adivinado", "x-mdd-hospital": OTHER})
        # What any web page can send cross-origin without a preflight: a text/plain form post.
        simple = await http.post("/uploads", content=zip_of(study), headers={"Content-Type": "text/plain"})
        stow = await http.post("/dicomweb/studies", content=stow_body(study), headers={"Content-Type": STOW_TYPE})
        user_key = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
        assert (await http.get("/healthz")).status_code == 200
    assert [r.status_code for r in (anonymous, forged, simple, stow, user_key)] == [401] * 5
    assert "API" in anonymous.json()["detail"]
    assert doors.stored() == []


async def test_an_uploader_stores_a_zip_for_its_hospital_and_reads_nothing(settings: Settings) -> None:
    study = make_study(seed=15_202, hospital_id=HOSPITAL)
    async with doors_open(settings) as doors, httpx.AsyncClient(base_url=doors.api, timeout=60) as http:
        report = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
        assert report.status_code == 200, report.text
        assert report.json()["stored"] == 4
        await doors.ctx.bus.drain()  # type: ignore[attr-defined]
        assert {event["hospital_id"] for event in doors.stored()} == {HOSPITAL}
        # Write-only: nothing of what it stored, nor anything else, can be read back with its key.
        for path in ("/studies", f"/studies/{study.study_uid}", "/dicomweb/studies", "/notifications", "/auth/me"):
            answer = await http.get(path, headers=doors.as_("uploader"))
            assert answer.status_code == 403, path
        assert "upload-only" in answer.json()["detail"]
        audit = await asyncio.to_thread(lambda: doors.ctx.engine.connect().exec_driver_sql(
            "SELECT principal, action, detail FROM auth_audit WHERE action = 'upload'").all())
        assert [tuple(row) for row in audit] == [("apikey:estacion-cd", "upload", f"hospital={HOSPITAL}")]


async def test_only_the_roles_that_store_may_and_only_for_their_hospitals(settings: Settings) -> None:
    study = make_study(seed=15_203, hospital_id=HOSPITAL)
    async with doors_open(settings) as doors, httpx.AsyncClient(base_url=doors.api, timeout=60) as http:
        anonymous = await http.post("/uploads", content=zip_of(study), headers=ZIP)
        staff = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("staff")})
        provider = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("provider")})
        elsewhere = await http.post(f"/uploads?hospital={OTHER}", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
        which = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader_both")})
        text_plain = await http.post("/uploads", content=zip_of(study), headers={"Content-Type": "text/plain", **doors.as_("uploader")})
        staff_stow = await http.post("/dicomweb/studies", content=stow_body(study), headers={"Content-Type": STOW_TYPE, **doors.as_("staff")})
        assert doors.stored() == []
        assert [r.status_code for r in (anonymous, staff, provider, elsewhere, which, text_plain, staff_stow)] == [401, 403, 403, 403, 400, 415, 403]
        assert OTHER in which.json()["detail"] and "application/zip" in text_plain.json()["detail"]

        chosen = await http.post(f"/uploads?hospital={OTHER}", content=zip_of(study), headers={**ZIP, **doors.as_("uploader_both")})
        assert chosen.status_code == 200 and chosen.json()["stored"] == 4
        stow = await http.post("/dicomweb/studies", content=stow_body(make_study(seed=15_204)), headers={"Content-Type": STOW_TYPE, **doors.as_("doctor")})
        assert stow.status_code == 200
        await doors.ctx.bus.drain()  # type: ignore[attr-defined]
        assert sorted(event["hospital_id"] for event in doors.stored()) == [OTHER] * 4 + [HOSPITAL] * 4


async def test_http_doors_refuse_while_free_space_is_below_the_reserve_as_c_store_does(settings: Settings) -> None:
    full = settings.model_copy(update={"min_free_bytes": 1 << 60})
    study = make_study(seed=15_205, hospital_id=HOSPITAL)
    async with doors_open(full) as doors, httpx.AsyncClient(base_url=doors.api, timeout=60) as http:
        upload = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
        stow = await http.post("/dicomweb/studies", content=stow_body(study), headers={"Content-Type": STOW_TYPE, **doors.as_("doctor")})
    for answer in (upload, stow):
        assert answer.status_code == 503 and answer.headers["retry-after"] == "60"
        assert "reserve" in answer.json()["detail"]
    assert doors.stored() == []


@pytest.mark.parametrize("configured", [False, True])
async def test_the_api_and_ingest_share_the_token_from_settings_or_the_data_folder(settings: Settings, configured: bool) -> None:
    update = {"ingest_http_token": SecretStr("un-token-compartido-de-compose-0123456789")} if configured else {}
    study = make_study(seed=15_206, hospital_id=HOSPITAL)
    async with doors_open(settings.model_copy(update=update)) as doors, httpx.AsyncClient(base_url=doors.api, timeout=60) as http:
        report = await http.post("/uploads", content=zip_of(study), headers={**ZIP, **doors.as_("uploader")})
    assert report.status_code == 200 and report.json()["stored"] == 4
    kept = settings.data_dir / "ingest-http.token"
    assert kept.exists() is not configured


async def test_a_zip_larger_than_the_upload_limit_gets_413_declared_or_chunked(settings: Settings) -> None:
    small = settings.model_copy(update={"upload_max_total_bytes": 200_000})
    study = make_study(seed=15_207, hospital_id=HOSPITAL)
    body = zip_of(study)
    assert len(body) > 200_000

    async def chunked() -> AsyncIterator[bytes]:
        for at in range(0, len(body), 65536):
            yield body[at : at + 65536]

    async with doors_open(small) as doors, httpx.AsyncClient(base_url=doors.api, timeout=60) as http:
        declared = await http.post("/uploads", content=body, headers={**ZIP, **doors.as_("uploader")})
        streamed = await http.post("/uploads", content=chunked(), headers={**ZIP, **doors.as_("uploader")})
    for answer in (declared, streamed):
        assert answer.status_code == 413 and "MDD_UPLOAD_MAX_TOTAL_BYTES" in answer.json()["detail"]
    assert doors.stored() == []
