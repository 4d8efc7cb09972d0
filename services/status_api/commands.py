"""``mdd user add`` and ``mdd apikey add``: create the status API's users and integration keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.console import Console

from shared.db import make_engine
from shared.settings import Settings
from services.status_api.auth_tables import ROLES
from services.status_api.security import AuthError, create_api_key, create_user, deactivate_api_keys

commands = typer.Typer(help="Usuarios y llaves de la API de estado / status API users and keys.", no_args_is_help=True)
user = typer.Typer(help="Usuarios (contraseña → token) / users (password → token).", no_args_is_help=True)
apikey = typer.Typer(help="Llaves de API de integraciones / integration API keys.", no_args_is_help=True)
commands.add_typer(user, name="user")
commands.add_typer(apikey, name="apikey")
console = Console()

RoleOption = Annotated[str, typer.Option(help=f"Rol / role: {', '.join(ROLES)}")]
HospitalOption = Annotated[Optional[list[str]], typer.Option("--hospital", help="Hospital (repetible) / hospital (repeatable)")]
ProviderOption = Annotated[Optional[str], typer.Option(help="Id del proveedor (rol provider) / provider id")]


@user.command("add")
def user_add(
    username: str,
    role: RoleOption,
    hospital: HospitalOption = None,
    provider_id: ProviderOption = None,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="Contraseña (se pide si falta) / password (prompted)")] = "",
) -> None:
    """Crea o reemplaza un usuario / create or replace a user."""
    try:
        create_user(make_engine(Settings().resolved_database_url), username, password, role, hospital or [], provider_id)
    except AuthError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"Usuario creado / user created: {username} ({role})")


@apikey.command("add")
def apikey_add(
    name: str,
    role: RoleOption,
    hospital: HospitalOption = None,
    provider_id: ProviderOption = None,
    expires_at: Annotated[Optional[datetime], typer.Option(
        help="Vence en esta fecha (UTC si no lleva zona), p. ej. 2027-06-30 / expires at this time (UTC unless given)")] = None,
) -> None:
    """Crea una llave de API y la muestra una sola vez / create an API key and show it once."""
    try:
        key = create_api_key(make_engine(Settings().resolved_database_url), name, role, hospital or [], provider_id,
                             expires_at=expires_at)
    except AuthError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if expires_at is not None:
        console.print(f"Vence / expires: {expires_at.isoformat()}")
    console.print("Llave creada; guárdela ahora, no se vuelve a mostrar / key created; store it now, it is not shown again:")
    print(key)


@apikey.command("deactivate")
def apikey_deactivate(name: str) -> None:
    """Desactiva las llaves con ese nombre / deactivate the keys of that name."""
    count = deactivate_api_keys(make_engine(Settings().resolved_database_url), name)
    if not count:
        console.print(f"[red]No hay llave activa con ese nombre / no active key of that name: {name}[/]")
        raise typer.Exit(1)
    console.print(f"Llaves desactivadas / keys deactivated: {name} ({count})")
