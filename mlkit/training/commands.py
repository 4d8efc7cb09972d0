"""Command-line entry points of this part (registered on the `mdd` command in services/cli.py).

Heavy libraries are imported inside the commands, so that `mdd --help` stays fast.

- ``mdd train``: train the two-view model on a manifest or on synthetic studies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

commands = typer.Typer()


def cache_dir_or_default(cache_dir: Optional[Path]) -> Path:
    """The preprocessed-image cache: the option, else ``MDD_DATA_DIR/training-cache``."""
    if cache_dir is not None:
        return cache_dir
    from shared.settings import get_settings

    return get_settings().data_dir / "training-cache"


def fail(message: str) -> None:
    """Print ``message`` to stderr and exit with status 2."""
    typer.echo(message, err=True)
    raise typer.Exit(2)


@commands.command("train")
def train_command(
    out: Annotated[Path, typer.Option(help="Carpeta de resultados / output folder")] = Path("var/training/run"),
    manifest: Annotated[Optional[Path], typer.Option(help="Manifiesto CSV/JSONL de entrenamiento / training manifest")] = None,
    synthetic: Annotated[Optional[int], typer.Option(help="Estudios sintéticos a generar / synthetic studies")] = None,
    seed: Annotated[int, typer.Option(help="Semilla de los datos sintéticos / synthetic data seed")] = 2024,
    generator: Annotated[int, typer.Option(min=1, max=2, help="Versión del generador sintético / synthetic generator")] = 2,
    backbone: Annotated[str, typer.Option(help="efficientnet_b0, compact_cnn o small_cnn")] = "efficientnet_b0",
    epochs: Annotated[int, typer.Option(help="Épocas máximas / maximum epochs")] = 20,
    batch_size: Annotated[int, typer.Option(help="Mamas por lote / breasts per batch")] = 16,
    learning_rate: Annotated[float, typer.Option("--lr", help="Tasa de aprendizaje máxima / peak learning rate")] = 2e-3,
    patience: Annotated[int, typer.Option(help="Parada temprana: épocas sin mejora del AUC / early stopping")] = 4,
    focal: Annotated[bool, typer.Option(help="Pérdida focal en malignidad y BI-RADS / focal loss")] = False,
    gamma: Annotated[float, typer.Option(help="Exponente de la pérdida focal / focal gamma")] = 2.0,
    val_fraction: Annotated[float, typer.Option(help="Fracción de pacientes para validación / validation share")] = 0.15,
    calibration_fraction: Annotated[
        float, typer.Option(help="Fracción para calibrar temperatura y umbrales / calibration share")
    ] = 0.15,
    augment: Annotated[bool, typer.Option(help="Aumento de datos / augmentation")] = True,
    balance: Annotated[bool, typer.Option(help="Pesar los casos malignos / weight malignant cases")] = True,
    channel_order: Annotated[str, typer.Option(help="RGB, o BGR como los cuadernos de la semilla / or BGR as the seed's")] = "RGB",
    split_seed: Annotated[int, typer.Option(help="Semilla de la partición / split seed")] = 0,
    train_seed: Annotated[int, typer.Option(help="Semilla de pesos y orden / weights and order seed")] = 0,
    threads: Annotated[int, typer.Option(help="Hilos de torch (0 = por omisión) / torch threads")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda o auto (la GPU si hay) / cpu, cuda or auto")] = "auto",
    checkpoint_dir: Annotated[Optional[Path], typer.Option(help="last.pt y best.pt (por omisión OUT/checkpoints)")] = None,
    weights_name: Annotated[str, typer.Option(help="Nombre del checkpoint final / final checkpoint name")] = "model.pt",
    holdout_synthetic: Annotated[int, typer.Option(help="Estudios sintéticos de prueba aparte (0 = ninguno)")] = 0,
    holdout_seed: Annotated[int, typer.Option(help="Semilla de la prueba aparte / held-out seed")] = 9001,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Caché de imágenes preprocesadas / preprocessed cache")] = None,
    note: Annotated[Optional[list[str]], typer.Option(help="Nota para la ficha del modelo (repetible) / model card note")] = None,
    progress: Annotated[bool, typer.Option(help="Barras de progreso / progress bars")] = True,
) -> None:
    """Entrena el modelo de dos vistas / train the two-view model (manifest or synthetic studies)."""
    from pydantic import ValidationError
    from rich.console import Console

    from mlkit.training.console import disclaimer, print_epoch, print_metrics
    from mlkit.training.losses import LossConfig
    from mlkit.training.run import run_training
    from mlkit.training.sources import DataSource
    from mlkit.training.trainer import TrainConfig

    console = Console()
    cache = cache_dir_or_default(cache_dir)
    try:
        source = DataSource(manifest=manifest, synthetic=synthetic, seed=seed, generator=generator, cache_dir=cache)
        config = TrainConfig(
            backbone=backbone, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            patience=patience, seed=train_seed, device=device, threads=threads,
            loss=LossConfig(focal=focal, gamma=gamma), augment=augment, balance_classes=balance,
            channel_order=channel_order.upper(),
        )
    except ValidationError as exc:
        fail(str(exc))
        return
    holdout = (
        DataSource(synthetic=holdout_synthetic, seed=holdout_seed, generator=generator, cache_dir=cache)
        if holdout_synthetic else None
    )
    data_arg = (
        f"--manifest {manifest}" if manifest is not None else f"--synthetic {synthetic} --seed {seed} --generator {generator}"
    )
    reproduce = (
        f"mdd train {data_arg} --backbone {backbone} --epochs {epochs} --batch-size {batch_size} "
        f"--lr {learning_rate} --patience {patience} {'--focal' if focal else '--no-focal'} --gamma {gamma} "
        f"--val-fraction {val_fraction} --calibration-fraction {calibration_fraction} --split-seed {split_seed} "
        f"--train-seed {train_seed} {'--augment' if augment else '--no-augment'} "
        f"{'--balance' if balance else '--no-balance'} --device {device}"
        + (f" --channel-order {channel_order.upper()}" if channel_order.upper() != "RGB" else "")
        + (f" --holdout-synthetic {holdout_synthetic} --holdout-seed {holdout_seed}" if holdout else "")
        + (f" --weights-name {weights_name}" if weights_name != "model.pt" else "")
    )
    disclaimer(console)
    console.print(f"Datos / data: {source.describe()}")
    result = run_training(
        config, source, out, val_fraction=val_fraction, calibration_fraction=calibration_fraction,
        split_seed=split_seed, checkpoint_dir=checkpoint_dir,
        weights_name=weights_name, holdout=holdout, reproduce=reproduce, notes=list(note or []), progress=progress,
        on_epoch=lambda record: print_epoch(console, record),
    )
    print_metrics(console, result.validation, f"Validación, mejor época {result.best_epoch} / validation, best epoch")
    if result.calibration is not None:
        print_metrics(console, result.calibration, f"Calibración (temperatura {result.temperature:.3f}) / calibration")
    if result.holdout is not None:
        print_metrics(console, result.holdout, "Prueba aparte / held-out")
    t = result.thresholds
    console.print(
        f"Umbrales calibrados / calibrated thresholds: ROJO / RED ≥ {t.high:.4f}, VERDE / GREEN < {t.low:.4f}"
        + ("" if t.calibrated else " (sin casos malignos: valores por omisión / no malignant cases: defaults)")
    )
    console.print(f"Checkpoint: {result.weights}\nFicha / model card: {result.model_card}")
    for plot in result.plots:
        console.print(f"Gráfica / plot: {plot}")
