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
