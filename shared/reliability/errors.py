"""Transient is not poison: which failures mean "a dependency is down, wait" and which "this input never works".

A dependency that is unavailable (object store, database, broker, SMTP or SMS gateway, PACS,
Triton) pauses the work: it is retried with capped backoff until the dependency is back, and no
delivery attempt is spent. Anything else is deterministic: the same input fails the same way, so it
counts against ``MDD_MAX_DELIVERY_ATTEMPTS`` and is finally dead-lettered.

Adapters raise :class:`DependencyUnavailable` where they know which dependency failed; the
classifier also recognises the raw exceptions of the libraries we use (SQLAlchemy, urllib3/minio,
aiokafka, smtplib, tritonclient, sockets), following the exception's cause chain.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import sqlite3
from enum import Enum


class Dependency(str, Enum):
    """Something outside the service that can be down for a while."""

    STORE = "store"
    DATABASE = "database"
    BROKER = "broker"
    SMTP = "smtp"
    SMS = "sms"
    WEBHOOK = "webhook"
    PACS = "pacs"
    TRITON = "triton"
    NETWORK = "network"


class DependencyUnavailable(RuntimeError):
    """A dependency did not answer, or answered "try again later"; the work waits for it."""

    def __init__(self, dependency: Dependency, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class PermanentFailure(RuntimeError):
    """An input that can never succeed (cannot be decoded or validated): counted, then dead-lettered."""


# S3 error codes that mean "the server is not ready" rather than "this request is wrong".
_S3_UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "XMinioServerNotInitialized",
     "XMinioStorageFull", "XMinioReadQuorum", "XMinioWriteQuorum", "OperationTimedOut"}
)
_MAX_CHAIN = 8


def _classify_one(exc: BaseException) -> Dependency | None:
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, PermanentFailure):
        return None
    module = type(exc).__module__ or ""
    name = type(exc).__name__
    if module.startswith("sqlalchemy"):
        from sqlalchemy import exc as sa_exc

        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return Dependency.DATABASE
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return Dependency.DATABASE
        return None
    if module.startswith("psycopg") and name in ("OperationalError", "InterfaceError", "ConnectionTimeout", "PoolTimeout"):
        return Dependency.DATABASE
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return Dependency.DATABASE
    if module.startswith("urllib3"):
        return Dependency.STORE
    if module.startswith("minio"):
        code = getattr(exc, "code", None)
        if name == "ServerError" or code in _S3_UNAVAILABLE_CODES:
            return Dependency.STORE
        return None
    if module.startswith(("aiokafka", "kafka")):
        if getattr(exc, "retriable", False) or name in ("KafkaConnectionError", "KafkaTimeoutError", "NoBrokersAvailable"):
            return Dependency.BROKER
        return None
    if module.startswith("tritonclient"):
        status = str(getattr(exc, "status", lambda: "")() or "")
        text = str(exc).lower()
        if status in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503", "504") or any(
            word in text for word in ("unavailable", "deadline", "timed out", "timeout", "connection")
        ):
            return Dependency.TRITON
        return None
    if isinstance(exc, smtplib.SMTPResponseException):
        return Dependency.SMTP if 400 <= exc.smtp_code < 500 else None
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return Dependency.SMTP
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, socket.timeout, socket.gaierror)):
        return Dependency.NETWORK
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED,
                         errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE):
            return Dependency.NETWORK if exc.errno not in (errno.ENOSPC, errno.EDQUOT) else Dependency.STORE
    return None


def unavailable_dependency(exc: BaseException) -> Dependency | None:
    """The dependency whose unavailability caused ``exc``; ``None`` when the failure is deterministic.

    The exception's ``__cause__``/``__context__`` chain is followed, so an adapter's own error raised
    ``from`` a connection error is still transient. A :class:`PermanentFailure` anywhere wins.
    """
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < _MAX_CHAIN and current not in seen:
        if isinstance(current, PermanentFailure):
            return None
        seen.append(current)
        current = current.__cause__ or current.__context__
    for candidate in seen:
        if (dependency := _classify_one(candidate)) is not None:
            return dependency
    return None


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means a dependency is down (retry without spending an attempt)."""
    return unavailable_dependency(exc) is not None


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for logs, events and dead letters."""
    return f"{type(exc).__name__}: {exc}"
