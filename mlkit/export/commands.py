"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

commands = typer.Typer()

ONNX_TOLERANCE = 1e-4


@commands.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Carpeta de salida / output folder")] = Path("var/export"),
    weights: Annotated[
        Optional[Path],
        typer.Option(
            help="Checkpoint (por omisión MDD_MODEL_WEIGHTS o el incluido; 'untrained': pesos aleatorios) / checkpoint"
        ),
    ] = None,
    backbone: Annotated[
        Optional[str], typer.Option(help="Red base sin checkpoint / backbone without a checkpoint")
    ] = None,
    triton_repo: Annotated[
        Optional[Path], typer.Option(help="Repositorio de modelos Triton (por omisión OUT/triton)")
    ] = None,
    model_name: Annotated[Optional[str], typer.Option(help="Nombre en Triton / Triton model name")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Lote máximo en Triton / max batch")] = 16,
    opset: Annotated[int, typer.Option(min=17, help="Opset de ONNX / ONNX opset")] = 18,
) -> None:
    """Exporta el modelo a TorchScript, ONNX y un repositorio Triton / export TorchScript, ONNX, Triton."""
    from rich.console import Console

    from mlkit.export.exporter import export_all
    from services.infer.predictor import resolve_weights_path
    from shared.settings import Settings

    settings = Settings()
    console = Console()
    weights = resolve_weights_path(weights if weights is not None else settings.model_weights)
    result = export_all(
        out,
        weights_path=weights,
        backbone=backbone or settings.model_backbone,
        triton_repository=triton_repo,
        model_name=model_name or settings.triton_model_name,
        max_batch_size=max_batch_size,
        opset=opset,
    )
    diff = result.max_difference
    console.print(f"TorchScript: {result.torchscript}")
    console.print(f"ONNX (opset {opset}): {result.onnx}  metadatos / metadata: {result.metadata}")
    console.print(f"Triton: {result.triton_config}  {result.triton_model}")
    console.print(f"torch vs ONNX Runtime: diferencia máxima / max difference {diff:.2e}")
    console.print(f"Entrenado con / trained on: {result.trained_on}")
    if not result.trained:
        console.print(
            "[yellow]Modelo SIN ENTRENAR (pesos aleatorios) / UNTRAINED model (random weights)[/]"
        )
    if diff > ONNX_TOLERANCE:
        console.print(f"[red]ONNX difiere de torch más de / differs from torch by more than {ONNX_TOLERANCE}[/]")
        raise typer.Exit(1)
