"""The deployment's secrets in the ``.env`` file beside compose.yaml: made strong and random, never defaulted."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.provision.access import SERVICES, database_password_variable, minio_secret_variable


@dataclass(frozen=True)
class SecretSpec:
    """One variable of ``.env``: its name, what it protects, and how a new value is made."""

    name: str
    purpose: str
    make: Callable[[], str]


def _token() -> str:
    return secrets.token_urlsafe(36)  # 48 characters, URL-safe: it may sit inside a database URL


def _hex() -> str:
    return secrets.token_hex(24)  # Kafka's JAAS lines and SCRAM tool take only [A-Za-z0-9._~-]


def _minio_root_user() -> str:
    return f"mdd-root-{secrets.token_hex(4)}"


SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec("MINIO_ROOT_USER", "usuario raíz de MinIO (solo provision) / MinIO root user (provision only)", _minio_root_user),
    SecretSpec("MINIO_ROOT_PASSWORD", "contraseña raíz de MinIO / MinIO root password", _token),
    SecretSpec("POSTGRES_PASSWORD", "dueño de la base (migraciones) / database owner (migrations)", _token),
    SecretSpec("MDD_AUTH_JWT_SECRET", "firma de las sesiones del API / signs API sessions", _token),
    SecretSpec("MDD_BOOTSTRAP_API_KEY", "primera llave de administrador / first administrator key", _token),
    SecretSpec("MDD_PATIENT_KEY_SECRET", "HMAC de patient_key, igual en todas las réplicas / patient_key HMAC", _token),
    SecretSpec("MDD_INGEST_HTTP_TOKEN", "el API ante las puertas HTTP de ingesta / the API at ingest's HTTP doors", _token),
    SecretSpec("KAFKA_CONTROLLER_PASSWORD", "controlador KRaft / KRaft controller login", _hex),
    SecretSpec("MDD_KAFKA_SASL_PASSWORD", "usuario SCRAM de los servicios (superusuario) / the services' SCRAM user (super user)", _hex),
    *(SecretSpec(minio_secret_variable(s), f"usuario MinIO de / MinIO user of {s}", _token) for s in SERVICES),
    *(SecretSpec(database_password_variable(s), f"rol PostgreSQL de / PostgreSQL role of {s}", _token) for s in SERVICES),
)


def read_env(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        name, _, value = stripped.partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def init_env(path: Path, rotate: tuple[str, ...] = ()) -> list[str]:
    """Add every missing (or empty) secret to ``path``, and new values for ``rotate``; return the names written.

    Values already there are kept, so running it again is safe. The file is readable by its owner only.
    """
    unknown = set(rotate) - {spec.name for spec in SECRETS}
    if unknown:
        raise ValueError(f"Secreto desconocido / unknown secret: {', '.join(sorted(unknown))}")
    present = read_env(path)
    lines = path.read_text().splitlines() if path.exists() else []
    written: list[str] = []
    for spec in SECRETS:
        if present.get(spec.name) and spec.name not in rotate:
            continue
        value = f"{spec.name}={spec.make()}"
        where = [i for i, line in enumerate(lines) if line.split("=", 1)[0].strip() == spec.name]
        if where:
            lines[where[-1]] = value
        else:
            lines.extend([f"# {spec.purpose}", value])
        written.append(spec.name)
    if written:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return written
