"""``mdd provider``: register external providers (teleradiology companies) and list them.

Registered on the ``mdd`` command in services/cli.py. Database and Kafka modules are imported
inside the commands, so that ``mdd --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.settings import Settings
    from services.notify.providers.registry import Provider

ACCESS_FIELDS = (
    ("usuario / username", "username"),
    ("contraseña / password", "password"),
    ("tópico / topic", "topic"),
    ("grupo / group", "group"),
    ("servidores / bootstrap", "bootstrap"),
    ("protocolo / security protocol", "security_protocol"),
    ("mecanismo / SASL mechanism", "sasl_mechanism"),
)

commands = typer.Typer(
    name="provider",
    help="Proveedores externos de interpretación (teleradiología) / external reading providers.",
    no_args_is_help=True,
)


def _console() -> Console:
    return Console()


def _fail(message: str, code: int = 1) -> typer.Exit:
    _console().print(f"[red]{escape(message)}[/]", soft_wrap=True)
    return typer.Exit(code)


def _settings_and_engine() -> tuple[Settings, Engine]:
    from pydantic import ValidationError

    from shared.db import make_engine
    from shared.settings import Settings
    from services.notify.providers.registry import init_registry

    try:
        settings = Settings()
    except ValidationError as exc:
        raise _fail(f"Ajustes inválidos / invalid settings: {exc}", 2) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    init_registry(engine)
    return settings, engine


@commands.command("add")
def add(
    provider_id: Annotated[str, typer.Argument(help="Identificador: minúsculas, dígitos, guiones / slug id")],
    nombre: Annotated[str, typer.Option("--nombre", "--name", help="Nombre para mostrar / display name")],
    hospital: Annotated[
        Optional[list[str]],
        typer.Option("--hospital", help="Hospital que atiende (se repite) / hospital served"),
    ] = None,
    webhook: Annotated[Optional[str], typer.Option(help="URL HTTPS del webhook / webhook URL")] = None,
    deidentify: Annotated[
        bool, typer.Option("--deidentify", help="Enviar copias anonimizadas / de-identified copies")
    ] = False,
    kafka: Annotated[bool, typer.Option("--kafka", help="Tópico propio en Kafka / own Kafka topic")] = False,
) -> None:
    """Registra un proveedor; el secreto del webhook se muestra una sola vez.

    Registers a provider; its webhook secret is shown only once.
    """
    from pydantic import ValidationError

    from services.notify.providers.registry import ProviderError, ProviderSpec, add_provider, remove_provider

    try:
        spec = ProviderSpec(
            provider_id=provider_id,
            display_name=nombre,
            hospitals=hospital or [],
            webhook_url=webhook,  # type: ignore[arg-type]
            deidentify=deidentify,
            kafka=kafka,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'proveedor'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise _fail(f"Proveedor inválido / invalid provider: {problems}", 2) from exc
    provision = None
    if kafka:
        try:
            from services.notify.providers.kafka_access import provision_provider_access as provision
        except ImportError as exc:
            raise _fail(
                "El acceso Kafka para proveedores no está disponible en esta instalación"
                f" / provider Kafka access is not available: {exc}"
            ) from exc
    settings, engine = _settings_and_engine()
    try:
        try:
            provider = add_provider(engine, spec)
        except ProviderError as exc:
            raise _fail(str(exc)) from exc
        access = None
        if provision is not None:
            try:
                access = provision(settings, provider.provider_id)
                if inspect.isawaitable(access):
                    access = asyncio.run(access)  # type: ignore[arg-type]
            except Exception as exc:
                remove_provider(engine, provider.provider_id)  # nothing half-registered stays behind
                raise _fail(f"No se pudo dar acceso Kafka / Kafka access failed: {exc}") from exc
    finally:
        engine.dispose()
    _print_added(settings, provider, access)


def _print_added(settings: Settings, provider: Provider, access: object | None) -> None:
    console = _console()
    console.print(
        f"Proveedor registrado / provider added: [bold]{escape(provider.provider_id)}[/] ({escape(provider.display_name)})"
        f" hospitales / hospitals: {escape(', '.join(provider.hospitals))}"
        f"{'  (anonimizado / de-identified)' if provider.deidentify else ''}",
        soft_wrap=True,
    )
    if provider.webhook_secret:
        console.print(
            f"Webhook: {escape(provider.webhook_url or '')}\n"
            "Secreto del webhook (se muestra una sola vez; guárdelo) / webhook secret (shown only once; keep it):",
            soft_wrap=True,
        )
        console.print(provider.webhook_secret, soft_wrap=True, markup=False, highlight=False)
    if access is not None:
        console.print(
            "Acceso Kafka (la contraseña se muestra una sola vez) / Kafka access (password shown only once):"
        )
        for label, name in ACCESS_FIELDS:
            value = getattr(access, name, None)
            if value is not None:
                shown = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
                console.print(f"  {label}: {escape(shown)}", soft_wrap=True, highlight=False)
    if settings.store_backend == "local":
        console.print(
            "[yellow]Aviso: el almacén local no genera enlaces de descarga; los proveedores los reciben con"
            " MinIO/S3 / warning: the local-folder store has no download links; use MinIO/S3[/]",
            soft_wrap=True,
        )


@commands.command("list")
def list_command() -> None:
    """Lista los proveedores (sin secretos) / lists providers (no secrets)."""
    from services.notify.providers.registry import list_providers

    _settings, engine = _settings_and_engine()
    try:
        providers = list_providers(engine)
    finally:
        engine.dispose()
    if not providers:
        _console().print("Sin proveedores registrados / no providers registered")
        return
    table = Table(
        "id",
        "nombre / name",
        "hospitales / hospitals",
        "webhook",
        "anonimizado / de-id",
        "kafka",
        "activo / active",
        "alta / created",
    )
    for provider in providers:
        table.add_row(
            escape(provider.provider_id),
            escape(provider.display_name),
            escape(", ".join(provider.hospitals)),
            escape(provider.webhook_url or "-"),
            "sí / yes" if provider.deidentify else "no",
            "sí / yes" if provider.kafka else "no",
            "sí / yes" if provider.active else "no",
            provider.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    _console().print(table)


@commands.command("deactivate")
def deactivate(provider_id: Annotated[str, typer.Argument(help="Identificador / id")]) -> None:
    """Deja de enviar estudios a un proveedor / stops sending studies to a provider."""
    from services.notify.providers.registry import ProviderError, deactivate_provider

    _settings, engine = _settings_and_engine()
    try:
        deactivate_provider(engine, provider_id)
    except ProviderError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    _console().print(f"Proveedor desactivado / provider deactivated: {escape(provider_id)}")
