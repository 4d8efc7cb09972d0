"""The pynetdicom Storage SCP: network machinery only, behaviour comes from the handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable

import functools
import ssl
import tempfile
from pathlib import Path

from pynetdicom import AE, _config, dimse_messages, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
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

from services.ingest.sop_classes import STORAGE_SOP_CLASSES

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
MAX_PDU_BYTES = 4 * 1024 * 1024


def received_instance(event: evt.Event) -> bytes | Path:
    """The instance of a C-STORE request: its spool file when chunked receiving is on, else its bytes.

    Raises when the received data cannot be framed as a DICOM file.
    """
    try:
        spooled = event.dataset_path
    except AttributeError:
        spooled = None
    return spooled if spooled is not None else event.encoded_dataset()


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """Server TLS context for DICOM TLS; with ``client_ca`` the peer must present a certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def start_scp(
    ae_title: str,
    host: str,
    port: int,
    handlers: list[tuple[object, Callable[..., object]]],
    max_associations: int = 25,
    spool_dir: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ThreadedAssociationServer:
    """Start the Storage SCP in background threads and return its server (call ``shutdown()``).

    Incoming data sets are written in chunks to a spool file (never held whole in memory) and
    streamed from there to the store.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    if spool_dir is not None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        # pynetdicom spools with NamedTemporaryFile() and no folder argument; give its module a
        # factory bound to our spool rather than changing the whole process's temp folder.
        dimse_messages.NamedTemporaryFile = functools.partial(tempfile.NamedTemporaryFile, dir=str(spool_dir))  # type: ignore[attr-defined]
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.maximum_associations = max_associations
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    server = ae.start_server((host, port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    log.info("SCP DICOM escuchando / listening on %s:%d AE %s%s", host, port, ae_title, " (TLS)" if ssl_context else "")
    return server
