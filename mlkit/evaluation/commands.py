"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.

- ``mdd evaluate``: print the training metrics for a checkpoint on a manifest or synthetic studies;
  with ``--robustness``, the AUC of each rendering and perturbation of held-out synthetic studies
  (:mod:`mlkit.evaluation.robustness`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mlkit.training.commands import cache_dir_or_default, fail

commands = typer.Typer()


@commands.command("evaluate")
def evaluate_command(
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint (por omisión el incluido / default: shipped)")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Manifiesto CSV/JSONL / manifest")] = None,
    synthetic: Annotated[Optional[int], typer.Option(help="Estudios sintéticos a generar / synthetic studies")] = None,
    seed: Annotated[int, typer.Option(help="Semilla de los datos sintéticos / synthetic data seed")] = 9001,
    generator: Annotated[int, typer.Option(min=1, max=2, help="Versión del generador sintético / synthetic generator")] = 2,
    robustness: Annotated[bool, typer.Option(help="Tabla de robustez / robustness table (generator 2)")] = False,
    studies: Annotated[int, typer.Option(min=2, help="Estudios de la tabla de robustez / robustness studies")] = 120,
    card: Annotated[Optional[Path], typer.Option(help="Escribir la tabla en esta ficha del modelo / write it into this card")] = None,
    split: Annotated[Optional[str], typer.Option(help="Solo filas de esta partición (train, val, test)")] = None,
    batch_size: Annotated[int, typer.Option(help="Mamas por lote / breasts per batch")] = 32,
    threads: Annotated[int, typer.Option(help="Hilos de torch (0 = por omisión) / torch threads")] = 0,
    device: Annotated[str, typer.Option(help="cpu o cuda")] = "cpu",
    cache_dir: Annotated[Optional[Path], typer.Option(help="Caché de imágenes preprocesadas / preprocessed cache")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Escribir las métricas en JSON / write metrics")] = None,
    progress: Annotated[bool, typer.Option(help="Barras de progreso / progress bars")] = True,
) -> None:
    """Evalúa un checkpoint / evaluate a checkpoint (same metrics as training)."""
    import torch
    from pydantic import ValidationError
    from rich.console import Console

    from services.infer.predictor import SHIPPED_WEIGHTS
    from mlkit.training.console import disclaimer, print_metrics
    from mlkit.evaluation.evaluate import evaluate_weights
    from mlkit.training.sources import DataSource

    console = Console()
    path = weights if weights is not None else SHIPPED_WEIGHTS
    if not path.is_file():
        fail(f"No existe el checkpoint / checkpoint not found: {path}")
    if threads:
        torch.set_num_threads(threads)
    if robustness:
        _robustness(console, path, studies, seed, device, card, json_out, progress)
        return
    try:
        source = DataSource(manifest=manifest, synthetic=synthetic, seed=seed, generator=generator, split=split,
                            cache_dir=cache_dir_or_default(cache_dir))
    except ValidationError as exc:
        fail(str(exc))
        return
    disclaimer(console)
    data = source.load(progress=progress)
    evaluation = evaluate_weights(path, data, batch_size=batch_size, device=device)
    meta = evaluation.metadata
    console.print(f"Modelo / model: {meta['model_name']} {meta['version']} ({meta['backbone']}); "
                  f"entrenado con / trained on: {meta['trained_on']}")
    console.print(f"Datos / data: {source.describe()}")
    print_metrics(console, evaluation.metrics, f"Evaluación / evaluation: {path.name}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(evaluation.metrics.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"Métricas / metrics: {json_out}")


def _robustness(console, path: Path, studies: int, seed: int, device: str, card: Optional[Path],  # type: ignore[no-untyped-def]
                json_out: Optional[Path], progress: bool) -> None:
    from rich.progress import Progress
    from rich.table import Table

    from mlkit.evaluation.robustness import evaluate_robustness, write_into_card
    from mlkit.training.console import disclaimer

    disclaimer(console)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("Robustez / robustness", total=studies)
        report = evaluate_robustness(path, studies, seed, device=device, on_study=lambda n: bar.update(task, completed=n))
    table = Table(title=f"Robustez / robustness: {report.model}, {studies} estudios / studies, semilla / seed {seed}")
    for column in ("fila / row", "AUC (IC 95 % / 95 % CI)", "caída / drop", "fuera de distribución / OOD", "objetivos / targets"):
        table.add_column(column)
    for row in report.rows:
        ci = f" ({row.auc_ci[0]:.3f}–{row.auc_ci[1]:.3f})" if row.auc_ci else ""
        table.add_row(f"{row.name}: {row.label}", f"{row.auc:.3f}{ci}", f"{row.drop:+.3f}", f"{row.out_of_distribution:.0%}",
                      "sí / yes" if row.meets_targets else "NO")
    console.print(table)
    console.print("Todas las filas cumplen / every row meets the targets" if report.all_met
                  else "No todas las filas cumplen los objetivos / not every row meets the targets")
    if card is not None:
        console.print(f"Ficha / card: {write_into_card(report, card)}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        console.print(f"Tabla / table: {json_out}")
