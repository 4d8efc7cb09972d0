"""``mdd secrets init`` and ``mdd provision``: the operator's two steps before ``docker compose up``.

Registered on the ``mdd`` command in services/cli.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

commands = typer.Typer(no_args_is_help=True)
secrets_commands = typer.Typer(
    name="secrets", help="Secretos del despliegue en .env / the deployment's secrets in .env.", no_args_is_help=True
)
commands.add_typer(secrets_commands)
console = Console()


@secrets_commands.command("init")
def secrets_init(
    env_file: Annotated[Path, typer.Option("--env-file", help="Archivo .env junto a compose.yaml")] = Path(".env"),
    rotate: Annotated[list[str] | None, typer.Option("--rotate", help="Cambiar este secreto / rotate this secret")] = None,
) -> None:
    """Escribe en .env los secretos que falten, fuertes y aleatorios / write the missing secrets, strong and random."""
    from infra.provision.secrets_file import init_env

    try:
        written = init_env(env_file, tuple(rotate or ()))
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if not written:
        console.print(f"{env_file}: todos los secretos ya están / every secret is already there")
        return
    console.print(f"{env_file} (solo su dueño lo lee / owner-only): {', '.join(written)}")
    if rotate:
        console.print("Tras rotar, corra `docker compose run --rm provision` / after rotating, run provision again")


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        console.print(f"[red]Falta la variable / missing variable {name}: `mdd secrets init`[/]")
        raise typer.Exit(2)
    return value


@commands.command("provision")
def provision() -> None:
    """Migra la base y crea un rol PostgreSQL y un usuario MinIO por servicio / migrate, then per-service access.

    Runs with the owner's database URL (``MDD_DATABASE_URL``) and MinIO's root credentials
    (``MINIO_ROOT_USER``, ``MINIO_ROOT_PASSWORD``); every service's password and key come from the
    variables ``mdd secrets init`` wrote.
    """
    from infra.provision.access import SERVICES, database_password_variable, minio_secret_variable
    from infra.provision.database import provision_database
    from infra.provision.object_store import provision_minio
    from shared.db import make_engine, upgrade_db
    from shared.reliability.retry import until_available_sync
    from shared.settings import Settings

    settings = Settings()
    passwords = {service: _required(database_password_variable(service)) for service in SERVICES}
    keys = {service: _required(minio_secret_variable(service)) for service in SERVICES}
    root_user, root_password = _required("MINIO_ROOT_USER"), _required("MINIO_ROOT_PASSWORD")
    engine = make_engine(settings.resolved_database_url)
    until_available_sync(lambda: upgrade_db(engine), "database schema")
    roles = until_available_sync(lambda: provision_database(engine, passwords), "database roles")
    users = until_available_sync(lambda: provision_minio(settings, root_user, root_password, keys), "object store users")
    console.print(f"Roles / roles: {', '.join(roles)}")
    console.print(f"Usuarios MinIO / MinIO users: {', '.join(users)}")
