"""Ingest's HTTP front doors against real clients: dicomweb-client and curl for STOW-RS, ZIP uploads."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import zipfile
from pathlib import Path

import httpx
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from shared.synth import SyntheticStudy, make_study
from tests.integration.conftest import door_headers

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"


def events(ctx, event_type: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(p) for topic, p in ctx.bus.sent if topic == f"mdd.{event_type}"]


async def test_stow_rs_with_dicomweb_client_stores_a_study(ingest_web, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    client = DICOMwebClient(url=f"{base}/dicomweb", headers=door_headers(ctx))
    datasets = [view.dataset for view in four_view_study.views]
    response = await asyncio.to_thread(client.store_instances, datasets)
    referenced = response.ReferencedSOPSequence
    assert {item.ReferencedSOPInstanceUID for item in referenced} == {str(d.SOPInstanceUID) for d in datasets}
    assert all(four_view_study.study_uid in item.RetrieveURL for item in referenced)
    assert "FailedSOPSequence" not in response
    await ctx.bus.drain()
    assert len(events(ctx, "instance.stored")) == 4 and len(events(ctx, "study.completed")) == 1


async def test_stow_rs_with_curl_reports_failures_per_instance(ingest_web, tmp_path: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    other = make_study(seed=31).views[0]
    boundary = "mdd-boundary-7"
    body = b""
    for data in (four_view_study.views[0].to_bytes(), other.to_bytes(), b"not dicom at all"):
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    (tmp_path / "body.bin").write_bytes(body)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            "curl", "-s", "-w", "\n%{http_code}", "-X", "POST",
            "-H", f"Authorization: {door_headers(ctx)['Authorization']}",
            "-H", f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}',
            "--data-binary", f"@{tmp_path / 'body.bin'}",
            f"{base}/dicomweb/studies/{four_view_study.study_uid}",
        ],
        capture_output=True, text=True, check=True,
    )
    payload, code = result.stdout.rsplit("\n", 1)
    assert code == "202"  # some stored, some failed
    answer = json.loads(payload)
    stored = answer[REFERENCED_SOP_SEQUENCE]["Value"]
    failed = answer[FAILED_SOP_SEQUENCE]["Value"]
    assert [item["00081155"]["Value"][0] for item in stored] == [str(four_view_study.views[0].dataset.SOPInstanceUID)]
    reasons = sorted(item["00081197"]["Value"][0] for item in failed)
    assert reasons == [0xA900, 0xC000]  # another study's instance; unreadable bytes


async def test_stow_rs_refuses_other_media_types_with_415(ingest_web) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    async with httpx.AsyncClient(headers=door_headers(ctx)) as client:
        response = await client.post(f"{base}/dicomweb/studies", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 415 and "multipart/related" in response.json()["detail"]


def zip_of_study(study: SyntheticStudy) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, view in enumerate(study.views):
            archive.writestr(f"PACIENTE/ESTUDIO/SERIE{index}/IM{index:04d}", view.to_bytes())
        archive.writestr("DICOMDIR", b"\x00" * 128 + b"DICM" + b"1.2.840.10008.1.3.10")
        archive.writestr("LEEME.txt", "Estudio enviado por el hospital")
        archive.writestr("__MACOSX/._IM0000", b"\x00\x05\x16\x07junk")
    return buffer.getvalue()


async def test_zip_upload_ingests_every_dicom_file_and_reports_the_rest(ingest_web, tmp_path: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    (tmp_path / "estudio.zip").write_bytes(zip_of_study(four_view_study))
    result = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-s", "-H", f"Authorization: {door_headers(ctx)['Authorization']}",
         "-F", f"file=@{tmp_path / 'estudio.zip'}", f"{base}/uploads"],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(result.stdout)
    assert (report["stored"], report["skipped"], report["failed"]) == (4, 3, 0)
    by_name = {f["name"]: f for f in report["files"]}
    assert by_name["DICOMDIR"]["status"] == "skipped" and by_name["LEEME.txt"]["status"] == "skipped"
    await ctx.bus.drain()
    stored = events(ctx, "instance.stored")
    assert len(stored) == 4 and stored[0]["calling_ae"] == "ZIP-UPLOAD"
    key = stored[0]["object_key"]
    assert dcmread(io.BytesIO(ctx.store.get_bytes("dicom", key))).StudyInstanceUID == four_view_study.study_uid

    async with httpx.AsyncClient(headers=door_headers(ctx)) as client:  # the same ZIP again, as a raw body: duplicates, nothing new
        again = (await client.post(f"{base}/uploads", content=(tmp_path / "estudio.zip").read_bytes(), headers={"Content-Type": "application/zip"})).json()
    assert again["duplicates"] == 4 and again["stored"] == 0


async def test_not_a_zip_is_a_400_with_a_reason(ingest_web) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    async with httpx.AsyncClient(headers=door_headers(ctx)) as client:
        response = await client.post(f"{base}/uploads", content=b"PK-not-really", headers={"Content-Type": "application/zip"})
    assert response.status_code == 400 and "ZIP" in response.json()["detail"]
