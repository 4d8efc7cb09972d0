"""The MinIO backend of the object store against a real MinIO server."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from shared.s3_upload import UploadError, crc32_header
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


def test_presigned_links_are_signed_for_the_public_url_that_browsers_and_providers_use(minio) -> None:  # type: ignore[no-untyped-def]
    port = minio.endpoint.rsplit(":", 1)[1]
    public = f"http://localhost:{port}"  # another name for the server, as a proxy or DNS name would be
    settings = Settings(
        store_backend="minio", minio_endpoint=minio.endpoint, minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key, minio_public_url=public + "/", bucket_dicom="it-public",
        bucket_derived="it-public-d", bucket_results="it-public-r",
    )
    store = build_store(settings)
    store.put_bytes("it-public", "H/1/2/3.dcm", b"DICM-publico", "application/dicom")
    url = store.url_for("it-public", "H/1/2/3.dcm")
    assert url is not None and url.startswith(f"{public}/it-public/H/1/2/3.dcm?")
    assert httpx.get(url).content == b"DICM-publico"
    # The signature covers the host: the same link sent to the internal address is refused.
    internal = url.replace(public, f"http://{minio.endpoint}")
    assert httpx.get(internal).status_code == 403


@pytest.mark.parametrize("bad", ["https://archivos.hospital.mx/minio", "ftp://archivos.hospital.mx", "archivos.hospital.mx"])
def test_a_public_url_with_a_path_or_another_scheme_is_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ValueError, match="MDD_MINIO_PUBLIC_URL"):
        Settings(minio_public_url=bad)


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


def test_minio_refuses_bytes_that_do_not_match_the_crc32_sent_with_them(minio) -> None:  # type: ignore[no-untyped-def]
    """Uploads carry a CRC-32 of their bytes and MinIO checks it: bytes damaged on the way are refused."""
    store = MinioStore(minio.endpoint, minio.access_key, minio.secret_key)
    store.ensure_buckets(["it-crc"])
    sent, damaged = b"DICM" + bytes(range(256)) * 4096, b"DICN" + bytes(range(256)) * 4096
    with pytest.raises(UploadError, match="Checksum"):
        store.uploader.request(
            "PUT", "it-crc", "H/1/2/3.dcm", body=damaged,
            headers={"Content-Length": str(len(damaged)), "x-amz-checksum-crc32": crc32_header(sent)},
        )
    assert store.stat("it-crc", "H/1/2/3.dcm") is None
    store.put_bytes("it-crc", "H/1/2/3.dcm", sent, "application/dicom")
    assert store.get_bytes("it-crc", "H/1/2/3.dcm") == sent


def test_an_instance_uploaded_while_it_arrives_is_invisible_until_complete(minio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = MinioStore(minio.endpoint, minio.access_key, minio.secret_key)
    store.ensure_buckets(["it-growing"])
    path = tmp_path / "llegando.dcm"
    content = bytes(range(256)) * (4096 * 21)  # 21 MiB: four whole 5 MiB parts and a last one
    upload = store.begin_upload("it-growing", "H/1/2/grande.dcm", path, "application/dicom")
    with open(path, "wb") as spool:
        for start in range(0, len(content), 4 * 1024 * 1024):  # written as 4 MiB C-STORE fragments
            spool.write(content[start : start + 4 * 1024 * 1024])
            spool.flush()
            upload.advance(spool.tell())
    assert store.stat("it-growing", "H/1/2/grande.dcm") is None
    upload.complete(len(content))
    assert store.get_bytes("it-growing", "H/1/2/grande.dcm") == content
    upload.abort()  # after completion: nothing happens
    assert store.get_bytes("it-growing", "H/1/2/grande.dcm") == content

    replaced = store.begin_upload("it-growing", "H/1/2/grande.dcm", path, "application/dicom")
    path.write_bytes(b"otro contenido" * (1024 * 1024))
    replaced.advance(path.stat().st_size)
    replaced.abort()
    assert store.get_bytes("it-growing", "H/1/2/grande.dcm") == content  # the aborted upload left no trace


def test_minio_upload_failure_is_an_error_the_caller_sees(minio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = MinioStore(minio.endpoint, minio.access_key, "wrong-secret-key")
    path = tmp_path / "x.dcm"
    path.write_bytes(b"DICM")
    with pytest.raises(UploadError, match="403"):
        store.put_file("it-crc", "H/1/2/4.dcm", path, "application/dicom")


def test_services_creating_the_same_buckets_at_the_same_moment_all_carry_on(minio) -> None:  # type: ignore[no-untyped-def]
    """Two services started together both create the buckets they need: neither may die of the other's."""
    import threading

    buckets = [f"it-race-{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    stores = [MinioStore(minio.endpoint, minio.access_key, minio.secret_key) for _ in range(6)]
    start, errors = threading.Barrier(len(stores)), []

    def create(store: MinioStore) -> None:
        start.wait()
        try:
            store.ensure_buckets(buckets)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and all(stores[0].client.bucket_exists(bucket) for bucket in buckets)
