"""The MinIO backend of the object store against a real MinIO server."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from shared.settings import Settings
from shared.store import MinioStore, ObjectNotFound, build_store


def test_minio_store_round_trip_with_hash_listing_and_presigned_url(minio) -> None:  # type: ignore[no-untyped-def]
    bucket = f"it-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        store_backend="minio", minio_endpoint=minio.endpoint, minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key, bucket_dicom=bucket, bucket_derived=bucket + "-d", bucket_results=bucket + "-r",
    )
    store = build_store(settings)
    assert isinstance(store, MinioStore)
    data = b"DICM" + bytes(range(256)) * 100
    store.put_bytes(bucket, "H/1.2/1.2.3/1.2.3.4.dcm", data, "application/dicom")
    assert store.get_bytes(bucket, "H/1.2/1.2.3/1.2.3.4.dcm") == data
    info = store.stat(bucket, "H/1.2/1.2.3/1.2.3.4.dcm")
    assert info is not None and info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.list_keys(bucket, "H/1.2/") == ["H/1.2/1.2.3/1.2.3.4.dcm"]
    assert store.stat(bucket, "H/none.dcm") is None
    with pytest.raises(ObjectNotFound):
        store.get_bytes(bucket, "H/none.dcm")
    url = store.url_for(bucket, "H/1.2/1.2.3/1.2.3.4.dcm")
    assert url is not None and httpx.get(url).content == data


def test_minio_put_file_streams_a_large_file_with_its_hash(minio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        store_backend="minio", minio_endpoint=minio.endpoint, minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key, bucket_dicom="it-files", bucket_derived="it-files-d", bucket_results="it-files-r",
    )
    store = build_store(settings)
    path = tmp_path / "grande.dcm"
    path.write_bytes(bytes(range(256)) * (40 * 4096))  # 40 MiB, above the client's default part size
    store.put_file("it-files", "H/1/2/grande.dcm", path, "application/dicom")
    info = store.stat("it-files", "H/1/2/grande.dcm")
    assert info is not None and info.size == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert store.get_bytes("it-files", "H/1/2/grande.dcm") == path.read_bytes()
