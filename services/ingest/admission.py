"""Who may open an association, decided before any data is received (pure)."""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Sender, Settings

REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
SOURCE_PRESENTATION = 0x03
CALLING_AE_NOT_RECOGNISED = 0x03
TEMPORARY_CONGESTION = 0x01


@dataclass(frozen=True)
class Admission:
    """Accept, or an A-ASSOCIATE-RJ (result, source, diagnostic) with the reason for the log."""

    accepted: bool
    reason: str
    result: int = 0
    source: int = 0
    diagnostic: int = 0


def admit(settings: Settings, calling_ae: str, address: str, free_bytes: int) -> Admission:
    """Decide whether a calling AE at ``address`` may send now."""
    space = admit_space(settings, free_bytes)
    if not space.accepted:
        return space
    sender = settings.senders.get(calling_ae.strip()) or _polled_pacs(settings, calling_ae)
    if sender is None and not settings.resolved_accept_unknown_senders:
        return Admission(
            False,
            f"AE no configurado / calling AE not configured: {calling_ae!r}",
            REJECTED_PERMANENT,
            SOURCE_SERVICE_USER,
            CALLING_AE_NOT_RECOGNISED,
        )
    if sender is not None and not sender.allows(address):
        return Admission(
            False,
            f"AE {calling_ae!r} no permitido desde / not allowed from {address}",
            REJECTED_PERMANENT,
            SOURCE_SERVICE_USER,
            CALLING_AE_NOT_RECOGNISED,
        )
    return Admission(True, "aceptada / accepted")


def admit_space(settings: Settings, free_bytes: int) -> Admission:
    """The free-space reserve, the part of admission every door applies (the HTTP doors as C-STORE does)."""
    if free_bytes < settings.min_free_bytes:
        return Admission(
            False,
            f"Espacio libre insuficiente ({free_bytes} < {settings.min_free_bytes} bytes) / free space below reserve",
            REJECTED_TRANSIENT,
            SOURCE_PRESENTATION,
            TEMPORARY_CONGESTION,
        )
    return Admission(True, "aceptada / accepted")


def _polled_pacs(settings: Settings, calling_ae: str) -> Sender | None:
    """The PACS ingest polls answers C-MOVE by C-STORE: it may send, from its own address only."""
    if not settings.pacs_host or calling_ae.strip() != settings.pacs_ae_title:
        return None
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(settings.pacs_host, None)})
    except OSError:
        return None
    return Sender(hospital_id=settings.pacs_hospital_id or settings.hospital_id, addresses=addresses)


def free_space(settings: Settings) -> int:
    """Free bytes on the spool, and on the store folder when the store is local (the smaller)."""
    folders: list[Path] = [settings.resolved_spool_dir]
    if settings.store_backend == "local":
        folders.append(settings.resolved_store_dir)
    free = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        free.append(shutil.disk_usage(folder).free)
    return min(free)
