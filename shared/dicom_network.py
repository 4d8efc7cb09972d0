"""How every service of the project speaks DICOM on the network: one AE factory, TLS, PDU size.

Every association we accept or request carries the project's Implementation Class UID and
Version Name (:mod:`shared.dicom_uids`) and the maximum PDU of ``MDD_DICOM_MAX_PDU``. Outbound
associations (results to the PACS, the PACS poller, C-MOVE sub-operations, storage commitment
reports) use DICOM TLS when their destination says ``"tls": true``: the peer's certificate is
verified against ``MDD_DICOM_TLS_CA`` (else the system's CAs), and ``MDD_DICOM_TLS_CERT`` /
``MDD_DICOM_TLS_KEY``, when set, are presented as our client certificate (mutual TLS).
"""

from __future__ import annotations

import ssl
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association

from shared.dicom_uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from shared.settings import DicomDestination, Settings

#: Seconds to wait for the peer at each step (association, DIMSE message, network idle).
TIMEOUT_SECONDS = 30.0


class DicomPeerError(RuntimeError):
    """A DICOM peer could not be reached or refused the association."""


def describe(destination: DicomDestination) -> str:
    """``AE@host:port``, how a destination is named in logs, records and events."""
    return f"{destination.ae_title}@{destination.host}:{destination.port}"


def new_ae(ae_title: str, settings: Settings) -> AE:
    """An application entity with the project's implementation identity, PDU size and timeouts."""
    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = settings.dicom_max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_SECONDS
    return ae


def client_tls_context(settings: Settings) -> ssl.SSLContext:
    """TLS context of our outbound associations: verify the peer, present our certificate when we have one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.dicom_tls_ca) if settings.dicom_tls_ca else None)
    context.check_hostname = False  # DICOM peers are named by address; the certificate chain is what is checked
    if settings.dicom_tls_cert and settings.dicom_tls_key:
        context.load_cert_chain(certfile=str(settings.dicom_tls_cert), keyfile=str(settings.dicom_tls_key))
    return context


def associate(ae: AE, destination: DicomDestination, settings: Settings, **kwargs: Any) -> Association:
    """Open an association to ``destination`` (TLS when it asks); raises :class:`DicomPeerError` when refused."""
    if destination.tls:
        kwargs["tls_args"] = (client_tls_context(settings), None)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, max_pdu=settings.dicom_max_pdu, **kwargs)
    if not assoc.is_established:
        raise DicomPeerError(f"{describe(destination)} no aceptó la asociación / association refused or unreachable")
    return assoc
