"""One PostgreSQL role per service: log in, read and write its own tables and the shared ones, nothing else.

Run as the database owner after the migrations (``mdd provision``); idempotent, and a second run sets
the passwords again (rotation). A service role cannot create, alter or drop anything, nor read
another service's tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from infra.provision.access import SERVICES, database_role, tables_of
from shared.db import VERSION_TABLE

log = logging.getLogger("mdd.provision")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings is on since PostgreSQL 9.1


def _identifier(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)  # type: ignore[no-any-return]


def provision_database(owner: Engine, passwords: Mapping[str, str]) -> list[str]:
    """Create or update every service's role and its grants; return the role names."""
    if owner.dialect.name != "postgresql":
        raise ValueError("Los roles por servicio son de PostgreSQL / per-service roles need PostgreSQL")
    missing = [service for service in SERVICES if not passwords.get(service)]
    if missing:
        raise ValueError(f"Faltan contraseñas de / missing passwords for: {', '.join(missing)}")
    roles = []
    with owner.begin() as connection:
        database = _identifier(connection, connection.execute(text("SELECT current_database()")).scalar_one())
        connection.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        connection.execute(text(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC"))
        for service in SERVICES:
            role = database_role(service)
            quoted = _identifier(connection, role)
            exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
            verb = "ALTER" if exists else "CREATE"
            connection.execute(
                text(f"{verb} ROLE {quoted} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
                     f" PASSWORD {_literal(passwords[service])}")
            )
            connection.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {quoted}"))
            connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
            connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}"))
            connection.execute(text(f"GRANT SELECT ON {VERSION_TABLE} TO {quoted}"))
            for table in tables_of(service):
                connection.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_identifier(connection, table)} TO {quoted}"))
            connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
            roles.append(role)
            log.info("Rol de base de datos listo / database role ready: %s", role)
    return roles
