"""S3 uploads for DICOM instances: a streamed PUT, and a multipart upload of a file still arriving.

The ``minio`` client reads every part into memory and, over plain HTTP, SHA-256-hashes it once more
to sign the payload; for a 27 MB mammogram that repeats the work ingest already did while receiving
it. Here requests are signed with the client library's own SigV4 signer over ``UNSIGNED-PAYLOAD``,
bodies are streamed from the spool file, and integrity on the wire is still checked by the server
with S3's ``x-amz-checksum-crc32`` header (a cheap CRC-32; MinIO refuses a mismatch).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlsplit

import urllib3
from minio.credentials import Credentials
from minio.signer import sign_v4_s3
from minio.time import to_amz_date, utcnow

from shared.digests import CHUNK_BYTES, ContentDigest

log = logging.getLogger("mdd.store")

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SEND_BLOCK_BYTES = 1024 * 1024
PART_BYTES = 5 * 1024 * 1024  # the smallest part S3 allows (except the last): the least left to send at the end
PARALLEL_PARTS = 2  # one part in flight while the next is sent


class UploadError(IOError):
    """The S3 server refused or failed the upload."""


class StreamingUploader:
    """Signed S3 PUTs with a streamed body and a server-verified CRC-32."""

    def __init__(self, endpoint: str, credentials: Credentials, region: str, secure: bool, timeout_seconds: float = 60.0) -> None:
        self.base = f"{'https' if secure else 'http'}://{endpoint}"
        self.credentials = credentials
        self.region = region
        self.pool = urllib3.PoolManager(
            blocksize=SEND_BLOCK_BYTES,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds),
            retries=False,  # the body is a stream; the caller (a modality's retry) decides
        )

    def request(
        self,
        method: str,
        bucket: str,
        key: str,
        query: str = "",
        body: bytes | BinaryIO = b"",
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """A signed request on ``bucket/key``; raises ``UploadError`` unless the server answers 200."""
        url = urlsplit(f"{self.base}/{quote(bucket)}/{quote(key, safe='/')}" + (f"?{query}" if query else ""))
        date = utcnow()
        signed = sign_v4_s3(
            method=method,
            url=url,
            region=self.region,
            headers={
                "Host": url.netloc,
                "x-amz-date": to_amz_date(date),
                "x-amz-content-sha256": UNSIGNED_PAYLOAD,
                **(headers or {}),
            },
            credentials=self.credentials,
            content_sha256=UNSIGNED_PAYLOAD,
            date=date,
        )
        response = self.pool.request(method, url.geturl(), body=body, headers=signed, preload_content=True)
        if response.status not in (200, 204):
            raise UploadError(f"S3 {method} {bucket}/{key}: HTTP {response.status} {_s3_error(response.data)}")
        return response

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | BinaryIO,
        digest: ContentDigest,
        content_type: str,
        metadata: dict[str, str],
    ) -> None:
        """PUT ``body`` (``digest.size`` bytes) as ``bucket/key``; raises ``UploadError`` on refusal."""
        self.request(
            "PUT",
            bucket,
            key,
            body=body,
            headers={
                "Content-Type": content_type,
                "Content-Length": str(digest.size),
                "x-amz-checksum-crc32": crc32_header(body),
                **{f"x-amz-meta-{name}": value for name, value in metadata.items()},
            },
        )

    def put_file(self, bucket: str, key: str, path: Path, digest: ContentDigest, content_type: str, metadata: dict[str, str]) -> None:
        """Stream a file as ``bucket/key``."""
        with open(path, "rb") as body:
            self.put(bucket, key, body, digest, content_type, metadata)


class GrowingFileUpload:
    """A multipart upload of a file that is still being written (a C-STORE being received).

    Each 5 MiB part is sent, in a background thread, as soon as the writer has passed its end, so
    the upload of a large instance overlaps its reception; ``complete`` sends the rest and makes
    the object visible, ``abort`` discards it (nothing is visible before ``complete``).
    """

    def __init__(self, uploader: StreamingUploader, bucket: str, key: str, source: Path, content_type: str) -> None:
        self.uploader, self.bucket, self.key, self.source = uploader, bucket, key, source
        response = uploader.request("POST", bucket, key, "uploads=", headers={"Content-Type": content_type})
        found = re.search(rb"<UploadId>(.*?)</UploadId>", response.data)
        if found is None:
            raise UploadError(f"S3 {bucket}/{key}: no UploadId")
        self.upload_id = found.group(1).decode()
        self._sender = ThreadPoolExecutor(max_workers=PARALLEL_PARTS, thread_name_prefix="s3-part")
        self._parts: list[Future[str]] = []
        self._sent_until = 0
        self._lock = threading.Lock()
        self._finished = False

    def advance(self, written: int) -> None:
        """The writer has flushed ``written`` bytes: queue every whole part they contain."""
        with self._lock:
            while not self._finished and written - self._sent_until >= PART_BYTES:
                self._queue_part(self._sent_until, PART_BYTES)

    def complete(self, size: int) -> None:
        """Send the rest of the ``size``-byte file and complete the object; raises ``UploadError``."""
        with self._lock:
            if self._finished:
                raise UploadError(f"S3 {self.bucket}/{self.key}: upload already finished")
            if size > self._sent_until or not self._parts:
                self._queue_part(self._sent_until, size - self._sent_until)
            self._finished = True
        try:
            etags = [part.result() for part in self._parts]
            listing = "".join(
                f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>" for number, etag in enumerate(etags, 1)
            )
            self.uploader.request(
                "POST",
                self.bucket,
                self.key,
                f"uploadId={quote(self.upload_id)}",
                f"<CompleteMultipartUpload>{listing}</CompleteMultipartUpload>".encode(),
                {"Content-Type": "application/xml"},
            )
        except BaseException:
            self._discard()
            raise
        finally:
            self._sender.shutdown(wait=False)

    def abort(self) -> None:
        """Discard the upload (no-op once completed or aborted); never raises."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._discard()
        self._sender.shutdown(wait=False)

    def _queue_part(self, offset: int, length: int) -> None:
        number = len(self._parts) + 1
        self._parts.append(self._sender.submit(self._send_part, number, offset, length))
        self._sent_until = offset + length

    def _send_part(self, number: int, offset: int, length: int) -> str:
        with open(self.source, "rb") as handle:
            data = os.pread(handle.fileno(), length, offset)
        if len(data) != length:
            raise UploadError(f"{self.source}: {len(data)} of {length} bytes at {offset}")
        response = self.uploader.request(
            "PUT",
            self.bucket,
            self.key,
            f"partNumber={number}&uploadId={quote(self.upload_id)}",
            data,
            {"Content-Length": str(length), "x-amz-checksum-crc32": crc32_header(data)},
        )
        return str(response.headers.get("ETag", ""))

    def _discard(self) -> None:
        for part in self._parts:
            part.cancel()
        try:
            for part in self._parts:
                if not part.cancelled():
                    part.exception()
            self.uploader.request("DELETE", self.bucket, self.key, f"uploadId={quote(self.upload_id)}")
        except Exception as exc:  # an unfinished upload is invisible; MinIO expires it
            log.warning("No se pudo descartar la carga / could not abort upload %s: %r", self.key, exc)


def crc32_header(body: bytes | BinaryIO) -> str:
    """The ``x-amz-checksum-crc32`` value (big-endian CRC-32, base64) of bytes or a seekable file."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        crc = zlib.crc32(body)
    else:
        start, crc = body.tell(), 0
        for chunk in iter(lambda: body.read(CHUNK_BYTES), b""):
            crc = zlib.crc32(chunk, crc)
        body.seek(start)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _s3_error(body: bytes) -> str:
    """``Code: Message`` of an S3 error document, or the start of the body."""
    text = body.decode("utf-8", "replace")
    code, message = re.search(r"<Code>(.*?)</Code>", text), re.search(r"<Message>(.*?)</Message>", text)
    if code:
        return f"{code.group(1)}: {message.group(1) if message else ''}"
    return text[:200]
