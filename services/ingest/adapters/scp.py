"""The pynetdicom Storage SCP: network machinery only, behaviour comes from the handlers."""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import _config, dimse_messages, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from shared.digests import ContentDigest, Digester
from shared.dicom_network import new_ae
from shared.settings import Settings
from shared.store import GrowingUpload
from services.ingest.sop_classes import RESULT_SOP_CLASSES, STORAGE_SOP_CLASSES
from services.ingest.admission import admit_space, free_space
from services.ingest.validation import InstanceTooLarge

log = logging.getLogger("mdd.ingest.scp")

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
#: Query/Retrieve information models we serve (Patient Root and Study Root, C-FIND, C-MOVE, C-GET).
QUERY_RETRIEVE_SOP_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


EarlyUploadStarter = Callable[[Path, str], GrowingUpload | None]
"""Given a partly received spool file and the calling AE title: its upload, already under way, or None."""

EARLY_UPLOAD_AFTER_BYTES = 5 * 1024 * 1024  # smaller instances are uploaded whole once received
EARLY_UPLOAD_ATTEMPTS = 3  # the header may need more than the first fragment
SPOOL_SWEEP_IDLE_SECONDS = 600.0  # what no transfer touched for this long at start is left over
ROOM_CHECK_BYTES = 8 * 1024 * 1024  # free space is looked at again after this much of an instance
RoomCheck = Callable[[], "str | None"]  # why there is no room for more (free space below the reserve), or None


class SpoolFile:
    """A spool file that digests what pynetdicom writes into it, as it arrives.

    Hashing fragment by fragment overlaps with the network transfer and spares reading a large
    instance back just to hash it. With a ``starter``, a large instance also starts uploading to
    the store while it is still arriving (the object becomes visible only once it is accepted).
    """

    def __init__(
        self, spool_dir: Path, starter: EarlyUploadStarter | None = None, max_bytes: int | None = None,
        room: RoomCheck | None = None,
    ) -> None:
        self._file: Any = tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm", dir=str(spool_dir))
        self.name: str = self._file.name
        self.digester = Digester()
        self.upload: GrowingUpload | None = None
        self.max_bytes = max_bytes
        self.refused: str | None = None  # why the rest is counted, not kept (past ``max_bytes``, or no room left)
        self._room = room
        self._room_checked_at = 0
        self.handed = False  # given to the C-STORE handler (pynetdicom removes it after the handler)
        self._starter = starter
        self._start_attempts = 0
        assoc = getattr(threading.current_thread(), "assoc", None)
        self.association = id(assoc) if assoc is not None else None
        self._calling_ae = _calling_ae_of_this_thread()
        with _SPOOLS_LOCK:
            _SPOOLS[self.name] = self
        # An association aborted mid-instance never reaches the handler: its spool file goes with it.
        self._remove = weakref.finalize(self, _remove_spool, self.name, self._file)

    def write(self, data: bytes) -> int:
        """Write a piece of the instance, add it to the digest and feed the early upload.

        Past ``max_bytes``, or once free space falls below the reserve, nothing more is kept: the file is
        emptied, the early upload dropped and the handler told why (``refused``), so an endless instance
        costs neither disk nor memory.
        """
        self.digester.update(data)
        if self.refused:
            return len(data)
        if self.max_bytes is not None and self.digester.size > self.max_bytes:
            self.refused = f"Instancia > {self.max_bytes} bytes / instance over {self.max_bytes} bytes"
        elif self._room is not None and self.digester.size - self._room_checked_at >= ROOM_CHECK_BYTES:
            self._room_checked_at = self.digester.size
            self.refused = self._room()
        if self.refused:
            self._drop()
            return len(data)
        written = int(self._file.write(data))
        if self._starter is not None and self._calling_ae:
            self._feed_upload()
        return written

    def _drop(self) -> None:
        self._file.truncate(0)
        if self.upload is not None:
            self.upload.abort()

    def discard(self) -> None:
        """Close and remove the file, and abort its early upload (the association ended before the handler)."""
        if self.upload is not None:
            self.upload.abort()
        self._remove()

    def _feed_upload(self) -> None:
        size = self.digester.size
        if self.upload is None and (size < EARLY_UPLOAD_AFTER_BYTES or self._start_attempts >= EARLY_UPLOAD_ATTEMPTS):
            return
        self._file.flush()  # the starter reads the header, the upload reads whole parts, from the file
        if self.upload is None:
            self._start_attempts += 1
            try:
                self.upload = self._starter(Path(self.name), self._calling_ae) if self._starter else None
            except Exception as exc:  # e.g. the header is not complete yet: try on a later fragment
                log.debug("Carga anticipada no iniciada / early upload not started: %r", exc)
                return
            if self.upload is None:
                self._start_attempts = EARLY_UPLOAD_ATTEMPTS
                return
            # An association aborted mid-instance never reaches the handler: discard its upload.
            weakref.finalize(self, self.upload.abort)
        self.upload.advance(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _calling_ae_of_this_thread() -> str:
    """The calling AE title of the association receiving in this thread, when we are its acceptor.

    pynetdicom decodes P-DATA in the association's DUL thread, which holds its association.
    """
    assoc = getattr(threading.current_thread(), "assoc", None)
    if assoc is None or not getattr(assoc, "is_acceptor", False):
        return ""
    return str(assoc.requestor.ae_title).strip()


# Open spool files by path; an entry goes when pynetdicom lets go of its file.
_SPOOLS: weakref.WeakValueDictionary[str, SpoolFile] = weakref.WeakValueDictionary()
_SPOOLS_LOCK = threading.Lock()


def _remove_spool(name: str, file: Any) -> None:
    """Close and remove a spool file; a no-op once pynetdicom removed it after its handler."""
    try:
        file.close()
        Path(name).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("Archivo temporal no borrado / spool file not removed: %r", exc)


def discard_unfinished_spools(event: evt.Event) -> None:
    """EVT_CONN_CLOSE handler: remove the spool files of the closing association that no handler took."""
    association = id(event.assoc)
    with _SPOOLS_LOCK:
        unfinished = [spool for spool in _SPOOLS.values() if spool.association == association and not spool.handed]
    for spool in unfinished:
        log.info("Recepción interrumpida; se borra su archivo temporal / interrupted receive, spool file removed")
        spool.discard()


def _last_touched(entry: Path) -> float:
    """When a spool file, or anything inside a spool folder, was last written."""
    times = [entry.stat().st_mtime]
    if entry.is_dir():
        times += [inner.stat().st_mtime for inner in entry.rglob("*")]
    return max(times)


def sweep_spool(spool_dir: Path, idle_seconds: float = SPOOL_SWEEP_IDLE_SECONDS) -> int:
    """Remove what earlier processes left in the spool folder (files and upload folders untouched for
    ``idle_seconds``: another replica's transfer in progress is spared); returns how many went."""
    removed = 0
    now = time.time()
    for entry in spool_dir.iterdir():
        try:
            if now - _last_touched(entry) < idle_seconds:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError as exc:  # gone meanwhile, or not ours to remove
            log.warning("No se pudo barrer / could not sweep %s: %r", entry.name, exc)
    if removed:
        log.info("Archivos temporales abandonados borrados / leftover spool files removed: %d", removed)
    return removed


def spool_at(path: Path) -> SpoolFile | None:
    """The open spool file this SCP is writing at ``path``, if any."""
    with _SPOOLS_LOCK:
        return _SPOOLS.get(str(path))


@dataclass(frozen=True)
class ReceivedInstance:
    """A C-STORE's instance: a spool file or bytes, its digest and its early upload when known."""

    payload: bytes | Path
    digest: ContentDigest | None = None
    upload: GrowingUpload | None = None


def received_instance(event: evt.Event) -> ReceivedInstance:
    """The instance of a C-STORE request.

    With chunked receiving on, that is the spool file, the digest taken while it was written and
    the upload started while it arrived; otherwise the encoded bytes. Raises when the received data
    cannot be framed as a DICOM file, :class:`InstanceTooLarge` when it was larger than the limit.
    """
    try:
        spooled = event.dataset_path
    except AttributeError:
        spooled = None
    if spooled is None:
        return ReceivedInstance(event.encoded_dataset())
    spool = spool_at(spooled)
    if spool is None:
        return ReceivedInstance(spooled)
    spool.handed = True
    if spool.refused:
        raise InstanceTooLarge(spool.refused)
    return ReceivedInstance(spooled, spool.digester.digest(), spool.upload)


class BulkReadSocket(AssociationSocket):
    """pynetdicom's association socket, reading a PDU with as few system calls as the network allows.

    The stock ``recv`` reads 4 KiB at a time and grows a buffer: a 27 MB mammogram costs thousands
    of calls under the interpreter lock, which competes with digesting and uploading the instance.
    """

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes`` (less only when the peer closed the connection)."""
        assert self.socket is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        read = 0
        while read < nr_bytes:
            count = self.socket.recv_into(view[read:], nr_bytes - read)
            if count == 0:
                del view
                return buffer[:read]
            read += count
        return buffer


def use_bulk_reads(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: give the new association's socket the bulk ``recv``.

    The connection is open but nothing has been read yet; only the read method changes.
    """
    socket_wrapper = event.assoc.dul.socket
    if type(socket_wrapper) is AssociationSocket:
        socket_wrapper.__class__ = BulkReadSocket


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """Server TLS context for DICOM TLS; with ``client_ca`` the peer must present a certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def start_scp(
    settings: Settings,
    handlers: list[tuple[object, Callable[..., object]]],
    spool_dir: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
    early_upload: EarlyUploadStarter | None = None,
) -> ThreadedAssociationServer:
    """Start the SCP (Verification, Storage, Storage Commitment, Query/Retrieve) in background threads
    and return its server (call ``shutdown()``).

    Incoming data sets are written in chunks to a spool file (never held whole in memory),
    digested as they arrive, and streamed from there to the store; with ``early_upload``, large
    instances start uploading while they arrive.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    spool = spool_dir if spool_dir is not None else Path(tempfile.gettempdir())
    spool.mkdir(parents=True, exist_ok=True)
    if spool_dir is not None:
        sweep_spool(spool)
    # pynetdicom spools with NamedTemporaryFile() and no folder argument; give its module a
    # factory bound to our spool (and digesting) rather than changing the process's temp folder.
    max_bytes = settings.instance_max_bytes

    def room() -> str | None:
        decision = admit_space(settings, free_space(settings))
        if decision.accepted:
            return None
        log.warning("Sin espacio a media recepción / out of room while receiving: %s", decision.reason)
        return "Sin espacio al recibir / free space below reserve"  # fits the 64 characters of Error Comment

    dimse_messages.NamedTemporaryFile = lambda **_: SpoolFile(spool, early_upload, max_bytes, room)  # type: ignore[attr-defined]
    handlers = [(evt.EVT_CONN_OPEN, use_bulk_reads), (evt.EVT_CONN_CLOSE, discard_unfinished_spools), *handlers]
    ae = new_ae(settings.ae_title, settings)
    ae.maximum_associations = settings.max_associations
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    ae.add_supported_context(StorageCommitmentPushModel)
    for sop_class in QUERY_RETRIEVE_SOP_CLASSES:
        ae.add_supported_context(sop_class)
    # Storage classes: we are their SCP for C-STORE; a C-GET requester may take the SCP role (we send).
    for sop_class in (*STORAGE_SOP_CLASSES, *RESULT_SOP_CLASSES):
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    host, port = settings.dicom_host, settings.dicom_port
    server = ae.start_server((host, port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    log.info("SCP DICOM escuchando / listening on %s:%d AE %s%s", host, port, settings.ae_title, " (TLS)" if ssl_context else "")
    return server
