"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.

- ``mdd import-dataset --format dicom-csv|cbis-ddsm|ddsm|vindr|cmmd|inbreast|rsna SRC OUT``: build a
  training manifest (CSV or JSON Lines, by OUT's extension) from a public or hospital data set.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from mlkit.datasets.result import ImportResult

commands = typer.Typer()

#: Problems printed in full; the rest are counted.
MAX_PROBLEMS_SHOWN = 20


class DatasetFormat(str, Enum):
    """Data sets the importers read."""

    dicom_csv = "dicom-csv"
    cbis_ddsm = "cbis-ddsm"
    ddsm = "ddsm"
    vindr = "vindr"
    cmmd = "cmmd"
    inbreast = "inbreast"
    rsna = "rsna"


def _console() -> Console:
    """A console sized now (``COLUMNS`` is read when it is made)."""
    return Console()


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console().print(f"[bold red]Error:[/] {message}")
    return typer.Exit(code)


def _print_summary(result: ImportResult, out: Path) -> None:
    console = _console()
    summary = result.summary()
    images = summary["images"]
    console.print(
        f"[bold]Manifiesto / manifest:[/] {out}  —  imágenes / images: {images['total']}, "
        f"mamas / breasts: {images['breasts']} (CC+MLO: {images['complete_breasts']})"
    )
    table = Table(title="Etiquetas / labels", show_header=True)
    table.add_column("campo / field")
    table.add_column("valores / values")
    for name in ("view", "laterality", "malignancy", "birads", "density", "split"):
        table.add_row(name, ", ".join(f"{k}: {v}" for k, v in summary[name].items()))
    console.print(table)
    if result.problems:
        console.print(f"[yellow]Problemas / problems: {len(result.problems)}[/]")
        for line in result.problems[:MAX_PROBLEMS_SHOWN]:
            console.print(f"  - {line}", markup=False, highlight=False)
        if len(result.problems) > MAX_PROBLEMS_SHOWN:
            console.print(f"  … y {len(result.problems) - MAX_PROBLEMS_SHOWN} más / and more")
    else:
        console.print("[green]Sin problemas / no problems[/]")


@commands.command("import-dataset")
def import_dataset(
    src: Annotated[Path, typer.Argument(help="Carpeta del conjunto de datos / data set folder")],
    out: Annotated[Path, typer.Argument(help="Manifiesto a escribir (.csv o .jsonl) / manifest to write")],
    dataset_format: Annotated[
        DatasetFormat, typer.Option("--format", help="Formato de origen / source format", case_sensitive=False)
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV de etiquetas (dicom-csv; por omisión SRC/labels.csv) / labels CSV"),
    ] = None,
    csv_file: Annotated[
        list[Path] | None,
        typer.Option("--csv", help="CSV de CBIS-DDSM (repetible; por omisión todos en SRC) / CBIS-DDSM CSVs"),
    ] = None,
    salt: Annotated[
        str,
        typer.Option(envvar="MDD_PSEUDONYM_SALT", help="Sal del seudónimo de paciente (dicom-csv) / pseudonym salt"),
    ] = "",
) -> None:
    """Construye el manifiesto de entrenamiento / build the training manifest from a data set."""
    from mlkit.datasets.manifest import ManifestError, write_manifest
    from mlkit.datasets.result import DatasetImportError

    if not src.is_dir():
        raise _fail(f"{src}: no es una carpeta / not a folder")
    if out.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise _fail(f"{out}: use .csv o .jsonl / use .csv or .jsonl")
    try:
        if dataset_format is DatasetFormat.dicom_csv:
            from mlkit.datasets.dicom_folder import import_dicom_folder

            result = import_dicom_folder(src, labels if labels is not None else src / "labels.csv", salt=salt)
        elif dataset_format is DatasetFormat.cbis_ddsm:
            from mlkit.datasets.cbis_ddsm import import_cbis_ddsm

            result = import_cbis_ddsm(src, csv_file or None)
        elif dataset_format is DatasetFormat.ddsm:
            from mlkit.datasets.ddsm import import_ddsm

            result = import_ddsm(src)
        elif dataset_format is DatasetFormat.vindr:
            from mlkit.datasets.vindr import import_vindr

            result = import_vindr(src)
        elif dataset_format is DatasetFormat.cmmd:
            from mlkit.datasets.cmmd import import_cmmd

            result = import_cmmd(src)
        elif dataset_format is DatasetFormat.inbreast:
            from mlkit.datasets.inbreast import import_inbreast

            result = import_inbreast(src)
        else:
            from mlkit.datasets.rsna import import_rsna

            result = import_rsna(src)
    except (DatasetImportError, ManifestError) as exc:
        raise _fail(str(exc)) from None
    if not result.rows:
        _print_summary(result, out)
        raise _fail("no se importó ninguna imagen / no image was imported")
    try:
        write_manifest(result.rows, out)
    except (ManifestError, OSError) as exc:
        raise _fail(str(exc)) from None
    _print_summary(result, out)
