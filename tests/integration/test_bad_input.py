"""The bad-input corpus over real front doors, while a good study is being sent at the same time."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

import httpx

from shared.synth import SyntheticStudy
from tests.corpus import bad_inputs, huge_instance
from tests.e2e.harness import storescu
from tests.integration.conftest import door_headers

FAILED_SOP_SEQUENCE = "00081198"


def _stow_body(parts: list[bytes], boundary: str) -> bytes:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n" for part in parts)
    return body + f"--{boundary}--\r\n".encode()


async def test_corpus_over_stow_and_zip_while_a_good_study_completes(ingest_web, study_folder: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, base = ingest_web
    corpus = bad_inputs(four_view_study.views[0])

    async def send_bad_over_stow() -> list[int]:
        answers = []
        async with httpx.AsyncClient(timeout=60, headers=door_headers(ctx)) as client:
            for bad in corpus:  # one request per file, so each answer maps to its file
                response = await client.post(
                    f"{base}/dicomweb/studies",
                    content=_stow_body([bad.data], "corpus"),
                    headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=corpus'},
                )
                assert response.status_code == 409, bad.name  # nothing stored from a bad request
                answers.append(response.json()[FAILED_SOP_SEQUENCE]["Value"][0]["00081197"]["Value"][0])
        return answers

    good, answers = await asyncio.gather(asyncio.to_thread(storescu, study_folder, ctx.settings.dicom_port), send_bad_over_stow())
    assert good.count("Received Store Response (Success)") == 4
    assert answers == [bad.expected_status for bad in corpus]

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for bad in corpus:
            bundle.writestr(f"malos/{bad.name}", bad.data)
    async with httpx.AsyncClient(timeout=60, headers=door_headers(ctx)) as client:
        report = (await client.post(f"{base}/uploads", content=archive.getvalue(), headers={"Content-Type": "application/zip"})).json()
    statuses = {f["name"]: (f["status"], f["dicom_status"]) for f in report["files"]}
    for bad in corpus:
        status, code = statuses[f"malos/{bad.name}"]
        assert (status == "skipped" and code is None) or (status == "failed" and code == bad.expected_status), bad.name
        assert status == "failed" or bad.name in ("sin_preambulo.dcm", "preambulo_basura.dcm", "no_dicom.jpg")
    assert report["stored"] == 0

    await ctx.bus.drain()
    events = [json.loads(p) for _, p in ctx.bus.sent]
    assert [e["event_type"] for e in events].count("instance.stored") == 4
    completed = [e for e in events if e["event_type"] == "study.completed"]
    assert [e["study_uid"] for e in completed] == [four_view_study.study_uid]


async def test_a_100_mb_instance_is_streamed_to_the_store(ingest_web, tmp_path: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = ingest_web
    folder = tmp_path / "grande"
    folder.mkdir()
    path = folder / "grande.dcm"
    huge_instance(four_view_study.views[0]).save_as(path, enforce_file_format=True)
    assert path.stat().st_size > 100 * 1000 * 1000
    output = await asyncio.to_thread(storescu, folder, ctx.settings.dicom_port)
    assert output.count("Received Store Response (Success)") == 1
    await ctx.bus.drain()
    [stored] = [json.loads(p) for t, p in ctx.bus.sent if t == "mdd.instance.stored"]
    kept = ctx.store.get_bytes("dicom", stored["object_key"])
    assert stored["size_bytes"] == len(kept) and stored["sha256"] == hashlib.sha256(kept).hexdigest()
    sent = path.read_bytes()
    # The data set is kept byte for byte as sent; the file meta header is the receiver's own (not sent over DICOM).
    assert kept[dataset_offset(kept):] == sent[dataset_offset(sent):]


def dataset_offset(part10: bytes) -> int:
    """Where the data set starts: after preamble, 'DICM' and the file meta group (its length is its first element)."""
    group_length = struct.unpack("<I", part10[140:144])[0]
    return 144 + group_length
