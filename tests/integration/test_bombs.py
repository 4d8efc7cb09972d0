"""Bombs at the real front doors: each refused with its status and reason, and the service keeps serving."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pynetdicom import AE

from infra.servers import dcmtk_tool
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.corpus import bad_inputs, huge_instance, rle_bomb, zip_bomb
from tests.e2e.harness import storescu
from tests.integration.conftest import door_headers, ingest_running


async def test_a_zip_bomb_is_refused_with_413_and_a_good_zip_is_ingested_after(ingest_web, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    async with httpx.AsyncClient(timeout=60, headers=door_headers(ctx)) as client:
        refused = await client.post(f"{base}/uploads", content=zip_bomb(), headers={"Content-Type": "application/zip"})
        assert refused.status_code == 413
        assert "bomba ZIP" in refused.json()["detail"] and "ZIP bomb" in refused.json()["detail"]

        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for view in four_view_study.views:
                bundle.writestr(f"estudio/{view.dataset.SOPInstanceUID}.dcm", view.to_bytes())
        report = (await client.post(f"{base}/uploads", content=archive.getvalue(), headers={"Content-Type": "application/zip"})).json()
    assert report["stored"] == 4 and report["failed"] == 0


def _store(port: int, path: Path) -> tuple[int, str]:
    """C-STORE one file with pynetdicom (the data set goes as it is in the file): its status and Error Comment."""
    dataset = dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="MAMO_SALA1")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MDD")
    assert assoc.is_established
    try:
        answer = assoc.send_c_store(path)
        return int(answer.Status), str(answer.get("ErrorComment", ""))
    finally:
        assoc.release()


async def test_c_store_bombs_get_their_status_and_reason_while_a_good_study_completes(  # type: ignore[no-untyped-def]
    running_ingest, tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy
) -> None:
    ctx = running_ingest
    bombs = [bad for bad in bad_inputs(four_view_study.views[0]) if bad.reason]
    for bad in bombs:
        (tmp_path / bad.name).write_bytes(bad.data)

    def send_bombs() -> list[tuple[int, str]]:
        return [_store(ctx.settings.dicom_port, tmp_path / bad.name) for bad in bombs]

    good, answers = await asyncio.gather(
        asyncio.to_thread(storescu, study_folder, ctx.settings.dicom_port), asyncio.to_thread(send_bombs)
    )
    assert good.count("Received Store Response (Success)") == 4
    assert [status for status, _ in answers] == [bad.expected_status for bad in bombs]
    assert all(comment for _, comment in answers)  # each refusal says why
    await ctx.bus.drain()
    events = [json.loads(p) for _, p in ctx.bus.sent]
    assert [e["study_uid"] for e in events if e["event_type"] == "study.completed"] == [four_view_study.study_uid]
    assert list(ctx.settings.resolved_spool_dir.iterdir()) == []


@pytest.fixture
async def small_ingest(settings: Settings):  # type: ignore[no-untyped-def]
    """Ingest that accepts instances of at most 1 MB, started over a spool folder an earlier process left dirty."""
    spool = settings.resolved_spool_dir
    spool.mkdir(parents=True)
    (spool / "abandonado.dcm").write_bytes(b"\0" * 1000)
    (spool / "mdd-upload-viejo").mkdir()
    (spool / "mdd-upload-viejo" / "upload.zip").write_bytes(b"PK")
    for leftover in (spool / "mdd-upload-viejo" / "upload.zip", spool / "mdd-upload-viejo", spool / "abandonado.dcm"):
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    async with ingest_running(settings.model_copy(update={"instance_max_bytes": 1_000_000})) as ctx:
        yield ctx


async def test_an_instance_over_the_limit_is_refused_while_it_arrives_and_the_spool_stays_clean(  # type: ignore[no-untyped-def]
    small_ingest, tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy
) -> None:
    ctx = small_ingest
    spool = ctx.settings.resolved_spool_dir
    assert list(spool.iterdir()) == []  # what the killed process left was swept at start
    big = tmp_path / "grande.dcm"
    huge_instance(four_view_study.views[0], megabytes=8).save_as(big, enforce_file_format=True)
    status, comment = await asyncio.to_thread(_store, ctx.settings.dicom_port, big)
    assert status == 0xA700 and "instance over 1000000 bytes" in comment
    assert (await asyncio.to_thread(storescu, study_folder, ctx.settings.dicom_port)).count("(Success)") == 4
    assert list(spool.iterdir()) == []


async def test_free_space_is_watched_while_an_instance_arrives_not_only_when_the_association_opens(  # type: ignore[no-untyped-def]
    settings: Settings, tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    from services.ingest.admission import free_space

    big = tmp_path / "grande.dcm"
    huge_instance(four_view_study.views[0], megabytes=120).save_as(big, enforce_file_format=True)
    reserve = free_space(settings) - 40 * 1024 * 1024  # room at the start; not once 40 of the 120 MB have arrived
    async with ingest_running(settings.model_copy(update={"min_free_bytes": reserve})) as ctx:
        status, comment = await asyncio.to_thread(_store, ctx.settings.dicom_port, big)
        assert status == 0xA700 and "al recibir" in comment and "reserve" in comment
        assert ctx.store.list_keys(ctx.settings.bucket_dicom, "") == []
        await _until(lambda: list(ctx.settings.resolved_spool_dir.iterdir()) == [], "the spool file removed")


async def test_the_spool_file_of_a_killed_sender_is_removed(running_ingest, tmp_path: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx = running_ingest
    spool = ctx.settings.resolved_spool_dir
    folder = tmp_path / "grande"
    folder.mkdir()
    huge_instance(four_view_study.views[0], megabytes=200).save_as(folder / "grande.dcm", enforce_file_format=True)
    sender = subprocess.Popen(
        [dcmtk_tool("storescu"), "-aet", "MAMO_SALA1", "-aec", "MDD", "--max-send-pdu", "16384", "127.0.0.1",
         str(ctx.settings.dicom_port), str(folder / "grande.dcm")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await _until(lambda: any(p.stat().st_size > 1_000_000 for p in spool.iterdir()), "a spool file growing")
    finally:
        sender.kill()  # SIGKILL: the association is never released nor aborted
        sender.wait()
    await _until(lambda: list(spool.iterdir()) == [], "the spool file removed")
    assert ctx.store.list_keys(ctx.settings.bucket_dicom, "") == []


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _stow_body(parts: list[bytes], boundary: str) -> bytes:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n" for part in parts)
    return body + f"--{boundary}--\r\n".encode()


STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=bomba'
FAILED_SOP_SEQUENCE = "00081198"


async def test_wado_answers_413_for_an_rle_bomb_and_keeps_rendering_good_images(settings: Settings, four_view_study: SyntheticStudy) -> None:
    from tests.integration.test_dicomweb import services_running

    bomb_view, good_view = four_view_study.views[0], four_view_study.views[1]
    async with services_running(settings) as running:
        async with httpx.AsyncClient(timeout=60, headers=door_headers(running.ctx)) as client:
            stored = await client.post(f"{running.ingest_url}/dicomweb/studies", headers={"Content-Type": STOW_TYPE},
                                       content=_stow_body([rle_bomb(bomb_view), good_view.to_bytes()], "bomba"))
        assert stored.status_code == 200  # its header is plausible: ingest keeps it, decoding is where it is judged
        await running.ctx.bus.drain()
        async with httpx.AsyncClient(base_url=running.api_url, headers={"Authorization": f"Bearer {running.keys['doctor']}"},
                                     timeout=60) as http:
            def path(view) -> str:  # type: ignore[no-untyped-def]
                ds = view.dataset
                return f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"

            rendered = await http.get(f"{path(bomb_view)}/rendered", headers={"Accept": "image/png"})
            frame = await http.get(f"{path(bomb_view)}/frames/1",
                                   headers={"Accept": 'multipart/related; type="application/octet-stream"'})
            good = await http.get(f"{path(good_view)}/rendered", headers={"Accept": "image/png"})
    for answer in (rendered, frame):
        assert answer.status_code == 413
        assert "would take 288000000 bytes" in answer.json()["detail"] and "ocuparía" in answer.json()["detail"]
    assert good.status_code == 200 and good.content.startswith(b"\x89PNG")


@pytest.fixture
async def stow_limited(settings: Settings):  # type: ignore[no-untyped-def]
    """Ingest that takes STOW-RS bodies of at most 3 MB."""
    async with ingest_running(settings.model_copy(update={"stow_max_body_bytes": 3_000_000})) as ctx:
        yield ctx, f"http://127.0.0.1:{ctx.settings.ingest_http_port}"


async def test_an_oversize_stow_body_gets_413_declared_or_not_and_a_good_one_is_stored(stow_limited, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = stow_limited
    oversize = _stow_body([view.to_bytes() for view in four_view_study.views] * 2, "bomba")  # about 3.4 MB
    assert len(oversize) > 3_000_000

    async def streamed() -> AsyncIterator[bytes]:  # chunked: no Content-Length to judge it by
        for at in range(0, len(oversize), 65536):
            yield oversize[at : at + 65536]

    async with httpx.AsyncClient(timeout=60, headers=door_headers(ctx)) as client:
        declared = await client.post(f"{base}/dicomweb/studies", headers={"Content-Type": STOW_TYPE}, content=oversize)
        chunked = await client.post(f"{base}/dicomweb/studies", headers={"Content-Type": STOW_TYPE}, content=streamed())
        good = await client.post(f"{base}/dicomweb/studies", headers={"Content-Type": STOW_TYPE},
                                 content=_stow_body([view.to_bytes() for view in four_view_study.views], "bomba"))
    for refused in (declared, chunked):
        assert refused.status_code == 413
        assert "El cuerpo excede 3000000 bytes" in refused.json()["detail"] and "the body exceeds" in refused.json()["detail"]
    assert good.status_code == 200 and len(good.json()["00081199"]["Value"]) == 4
    assert list(ctx.settings.resolved_spool_dir.iterdir()) == []


def _memory_kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc (VmRSS now, VmHWM its peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing for {pid}")


PEAK_BOUND_MB = 300  # what every bomb together may add to the ingest process's resident memory


def test_every_bomb_at_a_real_ingest_process_keeps_its_memory_bounded(tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy) -> None:
    from shared.db import make_engine
    from tests.conftest import free_port
    from tests.e2e.harness import echoscu_ok, mdd_process, wait_for

    dicom_port, http_port = free_port(), free_port()
    env = {
        "MDD_TRANSPORT": "memory", "MDD_STORE_BACKEND": "local", "MDD_DATA_DIR": str(tmp_path / "var"),
        "MDD_DICOM_PORT": str(dicom_port), "MDD_INGEST_HTTP_PORT": str(http_port), "MDD_LOG_JSON": "false",
        "MDD_MIN_FREE_BYTES": "0", "MDD_INSTANCE_MAX_BYTES": str(64 * 1024 * 1024),
        "MDD_STOW_MAX_BODY_BYTES": str(96 * 1024 * 1024), "MDD_INGEST_HTTP_TOKEN": "el-token-de-la-api-en-esta-prueba-0123",
    }
    view = four_view_study.views[0]
    bombs = [bad for bad in bad_inputs(view) if bad.reason]
    for bad in bombs:
        (tmp_path / bad.name).write_bytes(bad.data)
    big = tmp_path / "grande.dcm"  # 100 MB: over the 64 MB instance limit
    huge_instance(view).save_as(big, enforce_file_format=True)
    fits = huge_instance(four_view_study.views[1], megabytes=48)  # under it: streamed through STOW-RS and stored
    fits_body = io.BytesIO()
    fits.save_as(fits_body, enforce_file_format=True)
    base = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "ingest.log"
    with mdd_process(["serve", "ingest"], env, log) as process:
        wait_for(lambda: echoscu_ok(dicom_port) and httpx.get(f"{base}/healthz").status_code == 200, 90, "ingest", [(process, log)])
        idle_kib = _memory_kib(process.pid, "VmRSS")

        def throw_bombs() -> dict[str, object]:
            seen: dict[str, object] = {}
            for bad in bombs:
                seen[f"c-store {bad.name}"] = _store(dicom_port, tmp_path / bad.name)[0]
            seen["c-store grande.dcm"] = _store(dicom_port, big)[0]
            door = {"Authorization": f"Bearer {env['MDD_INGEST_HTTP_TOKEN']}"}
            with httpx.Client(base_url=base, timeout=120, headers=door) as client:
                zipped = client.post("/uploads", content=zip_bomb(), headers={"Content-Type": "application/zip"})
                seen["zip bomb"] = zipped.status_code
                answer = client.post("/dicomweb/studies", headers={"Content-Type": STOW_TYPE},
                                     content=_stow_body([bad.data for bad in bombs], "bomba"))
                seen["stow corpus"] = [item["00081197"]["Value"][0] for item in answer.json()[FAILED_SOP_SEQUENCE]["Value"]]
                seen["stow oversize body"] = client.post(
                    "/dicomweb/studies", headers={"Content-Type": STOW_TYPE}, content=_stow_body([big.read_bytes()], "bomba")
                ).status_code
                seen["stow 48 MB instance"] = client.post(
                    "/dicomweb/studies", headers={"Content-Type": STOW_TYPE}, content=_stow_body([fits_body.getvalue()], "bomba")
                ).status_code
                seen["stow rle bomb"] = client.post(
                    "/dicomweb/studies", headers={"Content-Type": STOW_TYPE}, content=_stow_body([rle_bomb(view)], "bomba")
                ).status_code
            return seen

        async def together() -> tuple[str, dict[str, object]]:
            return await asyncio.gather(asyncio.to_thread(storescu, study_folder, dicom_port), asyncio.to_thread(throw_bombs))

        good, seen = asyncio.run(together())
        peak_kib = _memory_kib(process.pid, "VmHWM")
        assert echoscu_ok(dicom_port) and httpx.get(f"{base}/healthz").status_code == 200  # still serving
        engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'mdd.db'}")
        try:
            study = wait_for(lambda: _completed(engine, four_view_study.study_uid), 30, "the good study completed", [(process, log)])
        finally:
            engine.dispose()
    print(f"\ningest: idle {idle_kib / 1024:.0f} MB, peak across the bombs {peak_kib / 1024:.0f} MB, "
          f"added {(peak_kib - idle_kib) / 1024:.0f} MB (bound {PEAK_BOUND_MB} MB)")
    assert good.count("Received Store Response (Success)") == 4 and study.completion_reason == "all_views"
    assert seen == {
        **{f"c-store {bad.name}": bad.expected_status for bad in bombs},
        "c-store grande.dcm": 0xA700,
        "zip bomb": 413,
        "stow corpus": [bad.expected_status for bad in bombs],
        "stow oversize body": 413,
        "stow 48 MB instance": 200,
        "stow rle bomb": 200,
    }
    assert peak_kib - idle_kib < PEAK_BOUND_MB * 1024


def _completed(engine, study_uid: str):  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    from services.ingest.tables import AssemblingStudy

    with Session(engine) as session:
        study = session.exec(select(AssemblingStudy).where(AssemblingStudy.study_uid == study_uid)).one_or_none()
    return study if study is not None and study.completed_at is not None else None
