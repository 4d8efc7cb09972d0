"""Printing metrics for people: one table per epoch, and the full report of an evaluation."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from services.infer.model import BIRADS_CLASSES, DENSITY_CLASSES
from mlkit.evaluation.metrics import Metrics
from mlkit.training.report import DISCLAIMER_EN, DISCLAIMER_ES
from mlkit.training.trainer import EpochRecord


def _f(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.4f}"


def _with_ci(value: float | None, interval: tuple[float, float] | None) -> str:
    return f"{_f(value)} ({interval[0]:.4f}–{interval[1]:.4f})" if interval is not None else _f(value)


def disclaimer(console: Console) -> None:
    """Print the demonstration-model notice (Spanish, then English)."""
    console.print(f"[yellow]{DISCLAIMER_ES}\n{DISCLAIMER_EN}[/]")


def print_epoch(console: Console, record: EpochRecord) -> None:
    """One line per epoch: losses and the validation metrics."""
    m = record.metrics
    star = " [bold green]★ mejor / best[/]" if record.best else ""
    console.print(
        f"época / epoch {record.epoch:>3}  pérdida / loss {record.train_loss:.4f} → val {record.val_loss:.4f}  "
        f"AUC {_f(m.malignancy_auc)}  exactitud / acc {_f(m.malignancy_accuracy)}  "
        f"sens@90%esp {_f(m.sensitivity_at_90_specificity)}  densidad / density {_f(m.density_accuracy)}  "
        f"BI-RADS {_f(m.birads_accuracy)}  ({record.seconds:.0f} s){star}"
    )


def _matrix(title: str, matrix: list[list[int]], names: list[str]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("verdadero \\ predicho / true \\ predicted")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, matrix):
        table.add_row(name, *(str(v) for v in row))
    return table


def print_metrics(console: Console, metrics: Metrics, title: str) -> None:
    """Headline metrics, triage operating points and the three confusion matrices."""
    table = Table(title=title)
    table.add_column("métrica / metric")
    table.add_column("valor / value", justify="right")
    table.add_row("mamas / breasts (malignas / malignant)", f"{metrics.breasts} ({metrics.malignant})")
    table.add_row("AUC de malignidad por mama / per-breast malignancy AUC (IC 95 % / 95 % CI)",
                  _with_ci(metrics.malignancy_auc, metrics.malignancy_auc_ci))
    if metrics.exams:
        table.add_row(f"AUC por examen / per-exam AUC ({metrics.exams} exámenes / exams)",
                      _with_ci(metrics.exam_auc, metrics.exam_auc_ci))
    table.add_row("exactitud de malignidad (0.5) / malignancy accuracy", _f(metrics.malignancy_accuracy))
    table.add_row("sensibilidad a 90 % de especificidad / sensitivity at 90 % specificity",
                  _f(metrics.sensitivity_at_90_specificity))
    table.add_row("exactitud de densidad / density accuracy", _f(metrics.density_accuracy))
    table.add_row("exactitud de BI-RADS / BI-RADS accuracy", _f(metrics.birads_accuracy))
    for key, point in metrics.triage.items():
        table.add_row(f"umbral / threshold {key}: sensibilidad, especificidad / sensitivity, specificity",
                      f"{_with_ci(point.sensitivity, point.sensitivity_ci)}, {_with_ci(point.specificity, point.specificity_ci)}")
    console.print(table)
    console.print(_matrix("Malignidad (corte 0.5) / malignancy (0.5 cut-off)", metrics.malignancy_confusion, ["0", "1"]))
    console.print(_matrix("Densidad ACR / ACR density", metrics.density_confusion, list(DENSITY_CLASSES)))
    console.print(_matrix("BI-RADS", metrics.birads_confusion, [str(c) for c in BIRADS_CLASSES]))


__all__ = ["disclaimer", "print_epoch", "print_metrics"]
