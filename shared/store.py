"""Object store: one small interface, a local-folder backend and a MinIO (S3) backend.

Writes are durable when ``put`` returns: the local backend fsyncs and renames atomically, MinIO
acknowledges only after its erasure-coded write. Keys use ``/`` separators.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import urlsplit

from shared.digests import ContentDigest, digest_bytes, digest_file
from shared.reliability.retry import until_available_sync
from shared.settings import Settings

CHUNK_BYTES = 1024 * 1024


class ObjectNotFound(KeyError):
    """The requested object does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    """Size and content hash of a stored object."""

    size: int
    sha256: str | None


class ObjectStore(Protocol):
    """What services need from an object store."""

    def ensure_buckets(self, buckets: list[str]) -> None:
        """Create the buckets that do not exist yet."""

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` durably under ``bucket/key`` (replacing any previous object)."""

    def put_file(self, bucket: str, key: str, path: Path, content_type: str, digest: ContentDigest | None = None) -> None:
        """Stream a file durably into ``bucket/key`` without reading it whole into memory.

        ``digest`` is the file's digest when the caller already computed it (e.g. while receiving).
        """

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """Read a whole object; raises ``ObjectNotFound``."""

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """Size and SHA-256 of an object, or ``None`` when it does not exist."""

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under a prefix, sorted."""

    def url_for(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        """A time-limited download URL, or ``None`` where the backend has none."""


class GrowingUpload(Protocol):
    """An upload of a file still being written; invisible until ``complete``."""

    key: str

    def advance(self, written: int) -> None:
        """The writer has flushed ``written`` bytes of the file."""

    def complete(self, size: int) -> None:
        """The file is whole (``size`` bytes): finish and make the object visible durably."""

    def abort(self) -> None:
        """Discard the upload; never raises."""


@runtime_checkable
class UploadsWhileWriting(Protocol):
    """A store that can upload a file while it is still being written (large C-STORE instances)."""

    def begin_upload(self, bucket: str, key: str, source: Path, content_type: str) -> GrowingUpload:
        """Start uploading ``source`` as ``bucket/key``; the caller advances, completes or aborts it."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"Clave de objeto inválida / invalid object key: {key!r}")
    return key


class LocalStore:
    """Objects as files under ``root/bucket/key``; a sidecar ``.sha256`` file keeps the hash."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / _check_key(bucket) / _check_key(key)

    def ensure_buckets(self, buckets: list[str]) -> None:
        for bucket in buckets:
            (self.root / _check_key(bucket)).mkdir(parents=True, exist_ok=True)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_durably(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
        _write_durably(path, data)

    def put_file(self, bucket: str, key: str, path: Path, content_type: str, digest: ContentDigest | None = None) -> None:
        target = self._path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_durably(target.with_name(target.name + ".sha256"), (digest or digest_file(path)).sha256.encode())
        with open(path, "rb") as source:
            _write_durably(target, lambda handle: shutil.copyfileobj(source, handle, CHUNK_BYTES))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        try:
            return self._path(bucket, key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"{bucket}/{key}") from exc

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        if not path.is_file():
            return None
        digest_file = path.with_name(path.name + ".sha256")
        digest = digest_file.read_text() if digest_file.is_file() else None
        return ObjectInfo(size=path.stat().st_size, sha256=digest)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        base = self.root / _check_key(bucket)
        if not base.is_dir():
            return []
        keys = (
            path.relative_to(base).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.endswith((".sha256", ".tmp"))
        )
        return sorted(key for key in keys if key.startswith(prefix))

    def url_for(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        return None


def _write_durably(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write ``data`` (bytes, or a function that writes to the handle) to a temporary file, fsync
    it, then rename it into place (atomic on POSIX) and make the rename durable."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class MinioStore:
    """Objects in MinIO (or any S3 server): the official ``minio`` client, and a streaming PUT.

    Uploads stream the body with a CRC-32 the server verifies (``shared.s3_upload``) instead of the
    client's read-into-memory-and-hash-again path; everything else goes through ``minio``.
    """

    SHA_HEADER = "sha256"

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, secure: bool = False, region: str = "us-east-1",
        public_url: str | None = None,
    ) -> None:
        from minio import Minio
        from minio.credentials import Credentials

        from shared.s3_upload import StreamingUploader

        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        # A presigned URL's signature covers its host: links for browsers and providers are signed for the
        # address they use (the region is known, so signing makes no request to that address).
        self.presigner = self.client
        if public_url:
            public = urlsplit(public_url)
            self.presigner = Minio(public.netloc, access_key=access_key, secret_key=secret_key,
                                   secure=public.scheme == "https", region=region)
        self.uploader = StreamingUploader(endpoint, Credentials(access_key, secret_key), region, secure)

    def ensure_buckets(self, buckets: list[str]) -> None:
        from minio.error import S3Error

        for bucket in buckets:
            try:
                if self.client.bucket_exists(bucket):
                    continue
            except S3Error as exc:
                # A least-privilege user (``mdd provision``) may not even look at a bucket it does not use:
                # the provisioner made it, and this service never touches it.
                if exc.code == "AccessDenied":
                    continue
                raise
            try:
                self.client.make_bucket(bucket)
            except S3Error as exc:  # another service made it at the same moment: that is what we wanted
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        digest = digest_bytes(data)
        self.uploader.put(bucket, _check_key(key), data, digest, content_type, {self.SHA_HEADER: digest.sha256})

    def put_file(self, bucket: str, key: str, path: Path, content_type: str, digest: ContentDigest | None = None) -> None:
        digest = digest or digest_file(path)
        self.uploader.put_file(bucket, _check_key(key), path, digest, content_type, {self.SHA_HEADER: digest.sha256})

    def begin_upload(self, bucket: str, key: str, source: Path, content_type: str) -> GrowingUpload:
        from shared.s3_upload import GrowingFileUpload

        return GrowingFileUpload(self.uploader, bucket, _check_key(key), source, content_type)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self.client.get_object(bucket, _check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFound(f"{bucket}/{key}") from exc
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        from minio.error import S3Error

        try:
            info = self.client.stat_object(bucket, _check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return None
            raise
        metadata = {name.lower(): value for name, value in (info.metadata or {}).items()}
        return ObjectInfo(size=info.size or 0, sha256=metadata.get(f"x-amz-meta-{self.SHA_HEADER}"))

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(
            obj.object_name
            for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True)
            if obj.object_name
        )

    def url_for(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str | None:
        return self.presigner.presigned_get_object(bucket, _check_key(key), expires=expires)


def build_store(settings: Settings) -> ObjectStore:
    """The object store chosen by ``MDD_STORE_BACKEND``, with its buckets created."""
    store: ObjectStore
    if settings.store_backend == "minio":
        store = MinioStore(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key,
            settings.minio_secure,
            settings.minio_region,
            settings.minio_public_url,
        )
    else:
        store = LocalStore(settings.resolved_store_dir)
    # A store that is not up yet is waited for: services start in any order.
    until_available_sync(
        lambda: store.ensure_buckets([settings.bucket_dicom, settings.bucket_derived, settings.bucket_results]),
        "object store buckets",
    )
    return store
