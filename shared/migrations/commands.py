"""``mdd db``: bring the database to the latest schema, or show where it stands.

Registered on the ``mdd`` command in services/cli.py. The database is ``--database-url``, else the
project's settings (``MDD_DATABASE_URL``, or SQLite in ``MDD_DATA_DIR``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

commands = typer.Typer(
    name="db",
    help="Esquema de la base de datos (migraciones) / database schema (migrations).",
    no_args_is_help=True,
)

UrlOption = Annotated[
    str | None,
    typer.Option("--database-url", help="URL SQLAlchemy; por omisión la de los ajustes / default: from settings"),
]


def _engine(url: str | None) -> Engine:
    from pydantic import ValidationError

    from shared.db import make_engine
    from shared.settings import Settings

    if url is None:
        try:
            url = Settings().resolved_database_url
        except ValidationError as exc:
            Console().print(f"[red]Ajustes inválidos / invalid settings: {escape(str(exc))}[/]", soft_wrap=True)
            raise typer.Exit(2) from exc
    return make_engine(url)


@commands.command("upgrade")
def upgrade(database_url: UrlOption = None) -> None:
    """Migra la base de datos a la última revisión / migrate the database to the latest revision."""
    from shared.db import MigrationError, current_revisions, upgrade_db

    engine = _engine(database_url)
    try:
        upgrade_db(engine)
        with engine.connect() as connection:
            current = current_revisions(connection)
    except MigrationError as exc:
        Console().print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    Console().print(f"Base de datos al día / database up to date: {', '.join(sorted(current))}")


@commands.command("current")
def current(database_url: UrlOption = None) -> None:
    """Muestra la revisión actual y la esperada / show the current and the expected revision.

    Exit code 1 when the database is not at the latest revision.
    """
    from shared.db import current_revisions, head_revisions

    engine = _engine(database_url)
    try:
        with engine.connect() as connection:
            current = current_revisions(connection)
    finally:
        engine.dispose()
    heads = head_revisions()
    console = Console()
    console.print(f"Revisión actual / current revision: {', '.join(sorted(current)) or '(ninguna / none)'}")
    console.print(f"Revisión esperada / expected revision: {', '.join(sorted(heads))}")
    if current != heads:
        console.print("[yellow]Pendiente: ejecute `mdd db upgrade` / behind: run `mdd db upgrade`[/]")
        raise typer.Exit(1)
    console.print("Al día / up to date")
