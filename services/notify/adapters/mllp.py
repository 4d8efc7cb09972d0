"""HL7 v2 over MLLP (python-hl7's client): send one message, read its ACK, refuse anything but AA/CA."""

from __future__ import annotations

from urllib.parse import urlsplit

import hl7
from hl7.client import MLLPClient

TIMEOUT_SECONDS = 30.0
ACCEPTED = frozenset({"AA", "CA"})


class MllpError(RuntimeError):
    """The RIS could not be reached, did not answer, or answered with a negative ACK."""


def endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an ``mllp://host:port`` channel URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "mllp" or not parts.hostname or not parts.port:
        raise ValueError(f"URL MLLP inválida / invalid MLLP URL (mllp://host:port): {url}")
    return parts.hostname, parts.port


def send_hl7(url: str, message: str) -> str:
    """Send ``message`` (ER7) and return the ACK's MSA-1 code; raises :class:`MllpError` unless it is AA or CA."""
    host, port = endpoint(url)
    try:
        client = MLLPClient(host, port)
    except OSError as exc:
        raise MllpError(f"RIS {host}:{port} no disponible / unreachable: {exc}") from exc
    try:
        client.socket.settimeout(TIMEOUT_SECONDS)
        answer = client.send_message(message)
    except OSError as exc:
        raise MllpError(f"RIS {host}:{port} sin ACK / no ACK: {exc}") from exc
    finally:
        client.close()
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    try:
        msa = hl7.parse(text.strip("\x0b\x1c\r\n")).segment("MSA")
        code, detail = str(msa[1]), str(msa[3]) if len(msa) > 3 else ""
    except Exception as exc:  # not an HL7 ACK at all
        raise MllpError(f"Respuesta no HL7 / not an HL7 ACK: {text[:200]!r}") from exc
    if code not in ACCEPTED:
        raise MllpError(f"El RIS rechazó el mensaje / the RIS refused the message: MSA-1 {code} {detail}".strip())
    return code
