"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.

- ``mdd eval-seg``: IoU and Dice of a segmentation backend against Labelme, COCO or the
  synthetic generator's masks.
- ``mdd prep-dataset SRC DST``: preprocess a folder of DICOM (or DDSM LJPEG) files on Ray.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from mlkit.preprocessing.batch import PrepSummary
    from mlkit.preprocessing.evaluation import EvaluationReport
    from shared.imaging.segmentation import Segmenter
    from shared.settings import Settings

commands = typer.Typer()


def _console() -> Console:
    """A console sized now (``COLUMNS`` is read when it is made)."""
    return Console()


class Backend(str, Enum):
    """Segmentation backends."""

    classic = "classic"
    sam = "sam"
    seed = "seed"


def _settings(backend: Backend | None, sam_checkpoint: Path | None, sam_model_type: str | None, device: str | None) -> Settings:
    """Settings from the environment, overridden by the options that were given."""
    from pydantic import ValidationError

    from shared.settings import Settings

    overrides: dict[str, object] = {}
    if backend is not None:
        overrides["segmentation_backend"] = backend.value
    if sam_checkpoint is not None:
        overrides["sam_checkpoint"] = sam_checkpoint
    if sam_model_type is not None:
        overrides["sam_model_type"] = sam_model_type
    if device is not None:
        overrides["sam_device"] = device
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(f"ajustes inválidos / invalid settings: {problems}") from exc


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console().print(f"[bold red]Error:[/] {message}")
    return typer.Exit(code)


def _segmenter_or_exit(settings: Settings) -> Segmenter:
    """Build the configured segmenter once per process; a bad SAM setup is a clear error, not a traceback."""
    from mlkit.preprocessing.batch import segmenter_for

    if settings.segmentation_backend == "sam" and settings.sam_checkpoint is None:
        raise _fail(
            "el backend sam necesita --sam-checkpoint (o MDD_SAM_CHECKPOINT) con un checkpoint oficial de "
            "Segment Anything / the sam backend needs --sam-checkpoint (or MDD_SAM_CHECKPOINT)"
        )
    try:
        return segmenter_for(settings)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(f"no se pudo preparar la segmentación / cannot build the segmenter: {exc}") from exc


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def print_evaluation(report: EvaluationReport, console: Console) -> None:
    """Rich table per image, then the means."""
    from rich.table import Table

    table = Table(title=f"Segmentación / segmentation: {report.backend} — {report.source}")
    for column in ("imagen / image", "lado / side", "vista / view", "IoU mama", "Dice mama",
                   "IoU pectoral", "Dice pectoral", "s"):
        if column.startswith("imagen"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right")
    for s in report.images:
        table.add_row(s.key, s.laterality or "?", s.view or "?", _fmt(s.breast_iou), _fmt(s.breast_dice),
                      _fmt(s.pectoral_iou), _fmt(s.pectoral_dice), f"{s.seconds:.3f}")
    table.add_section()
    table.add_row(f"media / mean ({len(report.images)} imágenes / images)", "", "",
                  _fmt(report.mean_breast_iou), _fmt(report.mean_breast_dice),
                  _fmt(report.mean_pectoral_iou), _fmt(report.mean_pectoral_dice), "", style="bold")
    console.print(table)
    console.print(
        f"mama / breast: IoU medio / mean {_fmt(report.mean_breast_iou)}, Dice {_fmt(report.mean_breast_dice)} "
        f"({len(report.images)} imágenes / images); pectoral (MLO): IoU medio / mean "
        f"{_fmt(report.mean_pectoral_iou)}, Dice {_fmt(report.mean_pectoral_dice)} "
        f"({report.pectoral_images} vistas MLO / MLO views)"
    )
    for skipped in report.skipped:
        console.print(f"[yellow]omitida / skipped[/] {skipped.key}: {skipped.reason}")


@commands.command("eval-seg")
def eval_seg(
    folder: Annotated[Path | None, typer.Argument(help="Carpeta con DICOM / folder of DICOM files")] = None,
    labelme: Annotated[Path | None, typer.Option(help="Carpeta de JSON de Labelme / Labelme JSON folder")] = None,
    coco: Annotated[Path | None, typer.Option(help="Archivo JSON COCO / COCO JSON file")] = None,
    synthetic: Annotated[int | None, typer.Option(min=1, help="N imágenes sintéticas / N synthetic images")] = None,
    seed: Annotated[int, typer.Option(help="Semilla de las sintéticas / synthetic seed")] = 0,
    rows: Annotated[int, typer.Option(min=64, help="Filas de las sintéticas / synthetic rows")] = 512,
    cols: Annotated[int, typer.Option(min=64, help="Columnas de las sintéticas / synthetic columns")] = 416,
    backend: Annotated[Backend | None, typer.Option(help="classic, sam o seed (por omisión MDD_SEGMENTATION_BACKEND)")] = None,
    compare: Annotated[
        Backend | None, typer.Option(help="Otro backend sobre las mismas imágenes, p. ej. seed / another backend, same images")
    ] = None,
    sam_checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint oficial de SAM / SAM checkpoint")] = None,
    sam_model_type: Annotated[str | None, typer.Option(help="vit_b, vit_l o vit_h")] = None,
    device: Annotated[str | None, typer.Option(help="cpu o cuda para SAM / SAM device")] = None,
    min_iou: Annotated[float | None, typer.Option(help="IoU medio mínimo de mama / minimum mean breast IoU")] = None,
    min_pectoral_iou: Annotated[float | None, typer.Option(help="IoU medio mínimo pectoral (MLO) / minimum mean pectoral IoU")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Guarda el reporte en JSON / write the report as JSON")] = None,
) -> None:
    """IoU y Dice de la segmentación contra Labelme, COCO o sintéticas / segmentation IoU and Dice."""
    from rich.progress import Progress

    from mlkit.preprocessing.evaluation import SkippedImage, evaluate, folder_cases, synthetic_cases
    from mlkit.preprocessing.groundtruth import GroundTruthError, read_coco, read_labelme_dir

    if (synthetic is None) == (folder is None):
        raise _fail("indique una carpeta de DICOM o --synthetic N / give a DICOM folder or --synthetic N")
    if folder is not None and (labelme is None) == (coco is None):
        raise _fail("con una carpeta indique --labelme DIR o --coco FILE / a folder needs --labelme or --coco")
    settings = _settings(backend, sam_checkpoint, sam_model_type, device)
    segmenter = _segmenter_or_exit(settings)

    skipped: list[SkippedImage] = []
    if synthetic is not None:
        cases = synthetic_cases(synthetic, seed=seed, rows=rows, cols=cols)
        source, total = f"sintéticas / synthetic: {synthetic} (semilla / seed {seed}, {rows}x{cols})", synthetic
    else:
        assert folder is not None
        if not folder.is_dir():
            raise _fail(f"no existe la carpeta / folder not found: {folder}")
        try:
            truths = read_labelme_dir(labelme) if labelme is not None else read_coco(coco)  # type: ignore[arg-type]
        except GroundTruthError as exc:
            raise _fail(str(exc)) from exc
        cases = folder_cases(folder, truths, skipped)
        source = f"{folder} + {'Labelme ' + str(labelme) if labelme else 'COCO ' + str(coco)}"
        total = None

    console = _console()
    if compare is not None:
        cases = list(cases)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Segmentando / segmenting", total=total)
        report = evaluate(cases, segmenter, source=source, skipped=skipped, on_image=lambda _: progress.advance(task))
    print_evaluation(report, console)
    if compare is not None:
        other = evaluate(cases, _segmenter_or_exit(_settings(compare, sam_checkpoint, sam_model_type, device)),
                         source=source, skipped=[])
        print_evaluation(other, console)
        console.print(
            f"Comparación / comparison: {report.backend} IoU mama / breast {_fmt(report.mean_breast_iou)} "
            f"vs {other.backend} {_fmt(other.mean_breast_iou)}; Dice {_fmt(report.mean_breast_dice)} vs "
            f"{_fmt(other.mean_breast_dice)}; pectoral IoU {_fmt(report.mean_pectoral_iou)} vs {_fmt(other.mean_pectoral_iou)}"
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.model_dump_json(indent=1), encoding="utf-8")

    failures = []
    if not report.images:
        failures.append("ninguna imagen evaluada / no image was scored")
    if min_iou is not None and (report.mean_breast_iou or 0.0) < min_iou:
        failures.append(f"IoU medio de mama / mean breast IoU {_fmt(report.mean_breast_iou)} < {min_iou}")
    if min_pectoral_iou is not None and (report.mean_pectoral_iou or 0.0) < min_pectoral_iou:
        failures.append(f"IoU medio pectoral / mean pectoral IoU {_fmt(report.mean_pectoral_iou)} < {min_pectoral_iou}")
    if failures:
        raise _fail("; ".join(failures), code=1)


def print_prep_summary(summary: PrepSummary, console: Console) -> None:
    """Counts per status and a table of the reasons files were skipped or failed."""
    from rich.table import Table

    counts = summary.counts
    table = Table(title=f"Preprocesamiento / preprocessing: {summary.source} → {summary.destination}")
    table.add_column("estado / status")
    table.add_column("archivos / files", justify="right")
    for status, label in (("processed", "procesados / processed"), ("skipped", "omitidos / skipped"),
                          ("failed", "fallidos / failed")):
        table.add_row(label, str(counts[status]), style="red" if status == "failed" and counts[status] else None)
    console.print(table)
    reasons = summary.reasons()
    if reasons:
        detail = Table(title="Motivos / reasons")
        for column in ("estado / status", "motivo / reason", "archivos / files", "ejemplo / example"):
            detail.add_column(column, overflow="fold")
        for status, reason, count, example in reasons:
            detail.add_row(status, reason, str(count), example)
        console.print(detail)
    mode = "un proceso / one process" if summary.mode == "serial" else f"Ray, {summary.workers} CPU"
    console.print(
        f"{sum(counts.values())} archivos en / files in {summary.wall_seconds:.2f} s ({mode}); "
        f"manifiesto / manifest: {Path(summary.destination) / 'manifest.csv'}"
    )


@commands.command("prep-dataset")
def prep_dataset(
    src: Annotated[Path, typer.Argument(help="Carpeta de DICOM o LJPEG / folder of DICOM or LJPEG files")],
    dst: Annotated[Path, typer.Argument(help="Carpeta de salida / output folder")],
    workers: Annotated[int, typer.Option(min=0, help="CPU de Ray (0: sin Ray, un proceso) / Ray CPUs (0: no Ray)")] = 2,
    address: Annotated[str | None, typer.Option(help="Clúster Ray existente (host:puerto o auto) / existing Ray cluster")] = None,
    backend: Annotated[Backend | None, typer.Option(help="classic o sam (por omisión MDD_SEGMENTATION_BACKEND)")] = None,
    sam_checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint oficial de SAM / SAM checkpoint")] = None,
    device: Annotated[str | None, typer.Option(help="cpu o cuda para SAM / SAM device")] = None,
    all_files: Annotated[bool, typer.Option("--all-files", help="También mask.png y crop.png / also mask.png and crop.png")] = False,
) -> None:
    """Preprocesa una carpeta completa en paralelo con Ray / preprocess a whole folder on Ray.

    Escribe DST/<ruta>/magma.png, input.npy y DST/manifest.csv|json; termina con código 1 si
    algún archivo falló / exits 1 when a file failed.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mlkit.preprocessing.batch import prepare_dataset

    if not src.is_dir():
        raise _fail(f"no existe la carpeta / folder not found: {src}")
    settings = _settings(backend, sam_checkpoint, None, device)
    _segmenter_or_exit(settings)  # a bad configuration fails here, before any worker starts

    console = _console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("Preprocesando / preprocessing", total=None)
        summary = prepare_dataset(
            src, dst, settings, workers=workers, address=address, all_files=all_files,
            on_start=lambda total: progress.update(task, total=total),
            on_row=lambda row: progress.advance(task),
        )
    print_prep_summary(summary, console)
    if summary.counts["failed"]:
        raise typer.Exit(1)
