"""The ``mdd`` command: run the system, one service, a demo, or write synthetic studies."""

from __future__ import annotations

import asyncio
import atexit
import importlib
import logging
import os
import secrets
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
import uvloop
from pydantic import SecretStr
from rich.console import Console

from shared.errors import ConfigurationError
from shared.logs import configure_logging
from shared.runtime import Registrar, build_context, run_until_stopped
from shared.settings import Settings

app = typer.Typer(
    help="Mexican Deep DICOM: semáforo de mastografías / mammography traffic light.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
NOTIFY_GRACE_SECONDS = 10.0

for _part in (
    "mlkit.preprocessing.commands",
    "mlkit.training.commands",
    "mlkit.evaluation.commands",
    "mlkit.export.commands",
    "mlkit.datasets.commands",
):
    app.add_typer(importlib.import_module(_part).commands)
app.add_typer(importlib.import_module("services.notify.providers.commands").commands, name="provider")
app.add_typer(importlib.import_module("shared.migrations.commands").commands, name="db")
app.add_typer(importlib.import_module("services.status_api.commands").commands)
app.add_typer(importlib.import_module("services.status_api.operations").commands)
app.add_typer(importlib.import_module("infra.provision.commands").commands)


class ServiceName(str, Enum):
    """The five services."""

    ingest = "ingest"
    preprocess = "preprocess"
    infer = "infer"
    notify = "notify"
    status_api = "status_api"


def registrar_of(name: str) -> Registrar:
    """A service's ``register`` function, imported only when that service runs."""
    return importlib.import_module(f"services.{name}.__main__").register  # type: ignore[no-any-return]


def _run(settings: Settings, names: list[str], client_id: str) -> None:
    configure_logging(settings.log_level, settings.log_json)
    ctx = build_context(settings, client_id=client_id)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # libuv's loop: less CPU per request
            runner.run(run_until_stopped(ctx, [registrar_of(name) for name in names]))
    except ConfigurationError as exc:  # a configuration problem: say what to do, no traceback
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


@app.command()
def up(
    data_dir: Annotated[Optional[Path], typer.Option(help="Carpeta de datos / data folder")] = None,
    api_port: Annotated[Optional[int], typer.Option(help="Puerto de la API / API port")] = None,
    dicom_port: Annotated[Optional[int], typer.Option(help="Puerto DICOM / DICOM port")] = None,
) -> None:
    """Los cinco servicios en un proceso (modo embebido) / all five services in one process."""
    overrides = {k: v for k, v in {"data_dir": data_dir, "api_port": api_port, "dicom_port": dicom_port}.items() if v is not None}
    settings = with_admin_key(Settings(**overrides))  # type: ignore[arg-type]
    console.print(
        f"[bold]Mexican Deep DICOM[/] — API y tablero / API and board: http://{settings.api_host}:{settings.api_port}  "
        f"DICOM: {settings.dicom_host}:{settings.dicom_port} AE [bold]{settings.ae_title}[/]  datos / data: {settings.data_dir}"
    )
    if settings.bootstrap_api_key is not None and "MDD_BOOTSTRAP_API_KEY" not in os.environ:
        console.print(
            f"Clave de administrador para el tablero y la API / admin key for the board and the API: "
            f"[bold]{settings.bootstrap_api_key.get_secret_value()}[/] ({settings.data_dir / ADMIN_KEY_FILE})"
        )
    _run(settings, [name.value for name in ServiceName], client_id="mdd-embedded")


ADMIN_KEY_FILE = "admin-api-key"


def with_admin_key(settings: Settings) -> Settings:
    """The embedded system's administrator key: ``MDD_BOOTSTRAP_API_KEY``, or one made at the first
    ``mdd up`` and kept, readable only by its owner, in the data folder (``mdd demo`` reads it there)."""
    if settings.bootstrap_api_key is not None and settings.bootstrap_api_key.get_secret_value():
        return settings
    path = settings.data_dir / ADMIN_KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return settings.model_copy(update={"bootstrap_api_key": SecretStr(path.read_text().strip())})


def distributed_settings() -> Settings:
    """Settings for one service of the distributed mode: Kafka and MinIO unless set otherwise."""
    settings = Settings()
    update: dict[str, object] = {}
    if "MDD_TRANSPORT" not in os.environ:
        update["transport"] = "kafka"
    if "MDD_STORE_BACKEND" not in os.environ:
        update["store_backend"] = "minio"
    return settings.model_copy(update=update)


def serve(name: str) -> None:
    """Run one service with distributed settings."""
    _run(distributed_settings(), [name], client_id=f"mdd-{name}")


@app.command("serve")
def serve_command(service: Annotated[ServiceName, typer.Argument(help="Servicio / service")]) -> None:
    """Un servicio con ajustes distribuidos (Kafka, MinIO, PostgreSQL) / one distributed service."""
    serve(service.value)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Carpeta destino / output folder")],
    count: Annotated[int, typer.Option(min=1, help="Estudios / studies")] = 1,
    seed: int = 0,
    rows: int = 512,
    cols: int = 416,
    finding: Annotated[Optional[str], typer.Option(help="mass | calcifications")] = None,
    photometric: str = "MONOCHROME2",
    generator: Annotated[int, typer.Option(min=1, max=2, help="1: 512x416; 2: campo completo / full field")] = 1,
) -> None:
    """Escribe estudios sintéticos de cuatro vistas / write synthetic four-view studies."""
    from shared.synth import write_studies

    studies = write_studies(out, count, seed, rows=rows, cols=cols, finding=finding, photometric=photometric,
                            version=generator)
    for study in studies:
        console.print(f"{study.study_uid}  acceso / accession {study.accession_number}  ({len(study.views)} vistas)")


@app.command()
def demo(
    host: str = "127.0.0.1",
    port: int = 11112,
    called_ae: str = "MDD",
    calling_ae: str = "MDD_DEMO",
    api: str = "http://127.0.0.1:8000",
    seed: Annotated[Optional[int], typer.Option(help="Semilla / seed (default: time)")] = None,
    finding: Annotated[Optional[str], typer.Option(help="mass | calcifications")] = "mass",
    timeout: float = 120.0,
) -> None:
    """Genera un estudio sintético, lo envía por C-STORE y muestra sus semáforos.

    Generates a synthetic study, sends it by C-STORE and prints both lights as they change.
    """
    from services.demo import send_study
    from shared.synth import make_study

    study = make_study(seed=seed if seed is not None else int(time.time()), finding=finding)
    console.print(f"Estudio sintético / synthetic study {study.study_uid} (acceso {study.accession_number})")
    statuses = send_study(study, host, port, called_ae, calling_ae)
    for view, status in zip(study.views, statuses):
        console.print(f"  C-STORE {view.laterality}-{view.view}: 0x{status:04X}")
    if any(statuses):
        raise typer.Exit(1)
    last = None
    ready_since: float | None = None
    deadline = time.monotonic() + timeout
    settings = Settings()  # the demo reads the API with the administrator's key (environment, or `mdd up`'s file)
    key = settings.bootstrap_api_key
    if key is None and (settings.data_dir / ADMIN_KEY_FILE).is_file():
        key = SecretStr((settings.data_dir / ADMIN_KEY_FILE).read_text().strip())
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    with httpx.Client(base_url=api, timeout=5, headers=headers) as client:
        while time.monotonic() < deadline:
            response = client.get(f"/studies/{study.study_uid}")
            if response.status_code == 200:
                body = response.json()
                seen = (body["state"], body["status_light"], body["triage_light"])
                if seen != last:
                    console.print(f"  estado / state {seen[0]:<12} estado / status {seen[1]:<7} triaje / triage {seen[2]}")
                    last = seen
                if body["state"] == "failed":
                    console.print(f"[red]Falla / failed:[/] {body['failure_reason']}")
                    raise typer.Exit(1)
                if body["state"] == "ready" and ready_since is None:
                    ready_since = time.monotonic()
                # Without notification rules a study stays "ready"; wait a little for "notified".
                if body["state"] in ("notified", "reported") or (
                    ready_since is not None and time.monotonic() - ready_since > NOTIFY_GRACE_SECONDS
                ):
                    console.print(f"  {body['triage_reason']}\n  {body['disclaimer']}")
                    return
            time.sleep(0.5)
    console.print("[red]Tiempo agotado / timed out[/]")
    raise typer.Exit(1)


def main() -> None:
    """The ``mdd`` command. It leaves through ``os._exit`` once its work, the ``atexit`` handlers and the
    flush of its output are done: the interpreter's teardown would only add the "leaked functions"
    report of Triton's nanobind bindings, which torch loads and which keep those objects on purpose
    for the life of the process."""
    code: int = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    finally:
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
