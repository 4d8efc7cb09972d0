"""Large instances through the SCP into a real MinIO: uploaded while they arrive, visible only when accepted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

from infra.servers import dcmtk_tool
from shared.s3_upload import PART_BYTES
from shared.settings import Settings
from shared.store import MinioStore
from shared.synth import SyntheticStudy, make_view
from tests.corpus import huge_instance
from tests.e2e.harness import storescu
from tests.integration.test_bad_input import dataset_offset
from tests.integration.conftest import ingest_running


def minio_settings(settings: Settings, minio) -> Settings:  # type: ignore[no-untyped-def]
    bucket = f"scp-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "store_backend": "minio", "minio_endpoint": minio.endpoint, "minio_access_key": minio.access_key,
            "minio_secret_key": minio.secret_key, "bucket_dicom": bucket, "bucket_derived": bucket + "-d",
            "bucket_results": bucket + "-r",
        }
    )


def data_set(part10: bytes) -> bytes:
    """The data set of a Part 10 file (the file meta header is each receiver's own)."""
    return part10[dataset_offset(part10) :]


def unfinished_uploads(store: MinioStore, bucket: str) -> int:
    """Multipart uploads MinIO still holds open in a bucket."""
    return store.uploader.request("GET", bucket, "", "uploads=").data.count(b"<Upload>")


async def test_full_field_mammograms_are_stored_whole_and_identical(settings: Settings, minio, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = minio_settings(settings, minio)
    folder = tmp_path / "mamografias"
    folder.mkdir()
    for index, (laterality, view) in enumerate((("R", "CC"), ("L", "CC"))):
        make_view(laterality=laterality, view=view, rows=4096, cols=3328, seed=70 + index).save(folder / f"{index}.dcm")
    async with ingest_running(settings) as ctx:
        output = await asyncio.to_thread(storescu, folder, settings.dicom_port)
        assert output.count("Received Store Response (Success)") == 2
        await ctx.bus.drain()
        stored = [json.loads(payload) for topic, payload in ctx.bus.sent if topic == "mdd.instance.stored"]
        assert len(stored) == 2
        sent = {data_set(path.read_bytes()) for path in folder.iterdir()}
        for event in stored:
            kept = ctx.store.get_bytes(settings.bucket_dicom, event["object_key"])
            assert event["size_bytes"] == len(kept) > 27_000_000
            assert event["sha256"] == hashlib.sha256(kept).hexdigest()
            assert data_set(kept) in sent
            # Sent in parts while it arrived (a multipart object's ETag counts its parts).
            assert isinstance(ctx.store, MinioStore)
            parts = -(-len(kept) // PART_BYTES)
            assert ctx.store.client.stat_object(settings.bucket_dicom, event["object_key"]).etag.endswith(f"-{parts}")
        assert unfinished_uploads(ctx.store, settings.bucket_dicom) == 0


async def test_an_instance_cut_off_mid_transfer_leaves_nothing_in_the_store(
    settings: Settings, minio, tmp_path: Path, four_view_study: SyntheticStudy  # type: ignore[no-untyped-def]
) -> None:
    settings = minio_settings(settings, minio)
    path = tmp_path / "grande.dcm"
    huge_instance(four_view_study.views[0]).save_as(path, enforce_file_format=True)
    async with ingest_running(settings) as ctx:
        assert isinstance(ctx.store, MinioStore)
        modality = subprocess.Popen(
            [dcmtk_tool("storescu"), "-aet", "MAMO_SALA1", "-aec", "MDD", "127.0.0.1", str(settings.dicom_port), str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while unfinished_uploads(ctx.store, settings.bucket_dicom) == 0:  # the upload has started
            assert time.monotonic() < deadline and modality.poll() is None, "no upload started"
            await asyncio.sleep(0.02)
        modality.kill()  # the modality goes away in the middle of the instance
        modality.wait()
        while unfinished_uploads(ctx.store, settings.bucket_dicom) > 0:
            assert time.monotonic() < deadline, "the cut-off upload was not discarded"
            await asyncio.sleep(0.1)
        assert ctx.store.list_keys(settings.bucket_dicom) == []
        await ctx.bus.drain()
        assert not [topic for topic, _ in ctx.bus.sent if topic == "mdd.instance.stored"]
        # The SCP keeps serving: the same instance sent whole is stored.
        output = await asyncio.to_thread(storescu, path.parent, settings.dicom_port)
        assert output.count("Received Store Response (Success)") == 1
        assert len(ctx.store.list_keys(settings.bucket_dicom)) == 1
