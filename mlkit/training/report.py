"""What a training run leaves for people: PNG plots and the model card (Markdown).

Plots use matplotlib's Agg backend (no display): the validation ROC curve with the triage
thresholds, the confusion matrices, and the loss and AUC curves per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import numpy as np
from pydantic import BaseModel

from services.infer.model import BIRADS_CLASSES, DENSITY_CLASSES
from mlkit.evaluation.metrics import Metrics, Thresholds, roc_curve
from mlkit.training.trainer import EpochRecord, TrainConfig

DISCLAIMER_ES: Final[str] = (
    "Modelo de demostración entrenado con fantomas sintéticos; no es un dispositivo clínico, no está "
    "validado clínicamente y nunca sustituye la interpretación del radiólogo."
)
DISCLAIMER_EN: Final[str] = (
    "Demonstration model trained on synthetic phantoms; not a clinical device, not clinically "
    "validated, and never a substitute for the radiologist's reading."
)
PLOT_NAMES: Final[tuple[str, ...]] = ("roc.png", "confusion.png", "loss.png")
LABELS_V1: Final[str] = (
    "Etiquetas / labels: normal → BI-RADS 1; masa ovalada circunscrita con halo o calcificaciones gruesas "
    "dispersas → 2; masa ovalada pequeña levemente lobulada → 3; masa irregular o cúmulo de "
    "calcificaciones finas → 4; masa espiculada o calcificaciones lineales ramificadas → 5. Malignidad = "
    "BI-RADS 4-5. Densidad ACR por la fracción fibroglandular: A < 0.25 ≤ B < 0.50 ≤ C < 0.75 ≤ D."
)
LABELS_V2: Final[str] = (
    "Etiquetas / labels (`shared/synth_v2.py`): sin hallazgos → BI-RADS 1; quiste, fibroadenoma, calcificaciones "
    "dispersas, vasculares o gruesas → 2; masa ovalada pequeña circunscrita o grupo de calcificaciones puntiformes "
    "→ 3; masa irregular de margen indistinto o cúmulo de calcificaciones pleomórficas finas → 4; masa espiculada "
    "o calcificaciones finas lineales ramificadas → 5; la mama toma el peor hallazgo. Malignidad = BI-RADS 4-5. "
    "Densidad ACR por la parte densa de la mama (continua, con casos en los límites): A < 0.25 ≤ B < 0.50 ≤ C < "
    "0.75 ≤ D / the breast takes its worst finding; malignancy = BI-RADS 4-5; ACR density from the dense share of "
    "the breast (continuous, borderline cases included)."
)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(labels: np.ndarray, scores: np.ndarray, auc: float, thresholds: Thresholds | None, path: Path) -> Path:
    """Validation ROC curve, with the operating points of the triage thresholds."""
    plt = _pyplot()
    known = labels >= 0
    fpr, tpr, _ = roc_curve(labels[known], scores[known])
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, color="#7b2cbf", lw=2, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    if thresholds is not None:
        y, s = labels[known], scores[known]
        for value, name, colour in ((thresholds.high, "ROJO / RED", "#d62828"), (thresholds.low, "AMARILLO / YELLOW", "#f4a261")):
            sens = float((s[y == 1] >= value).mean())
            fp = float((s[y == 0] >= value).mean())
            ax.scatter([fp], [sens], color=colour, zorder=3, label=f"{name} ≥ {value:.3f}")
    ax.set_xlabel("1 − especificidad / 1 − specificity")
    ax.set_ylabel("sensibilidad / sensitivity")
    ax.set_title("Malignidad, validación / malignancy, validation", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.5, 0.005, "Modelo de demostración, datos sintéticos / demonstration model, synthetic data",
             ha="center", fontsize=7, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _matrix(ax, matrix: list[list[int]], names: Sequence[str], title: str) -> None:  # type: ignore[no-untyped-def]
    data = np.asarray(matrix)
    ax.imshow(data, cmap="magma_r")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicho / predicted", fontsize=8)
    ax.set_ylabel("verdadero / true", fontsize=8)
    ax.set_title(title, fontsize=9)
    top = max(int(data.max()), 1)
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > top / 2 else "black")


def plot_confusion(metrics: Metrics, path: Path) -> Path:
    """Confusion matrices of malignancy (cut-off 0.5), density and BI-RADS."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), dpi=100, gridspec_kw={"width_ratios": [2, 4, 7]})
    _matrix(axes[0], metrics.malignancy_confusion, ["0", "1"], "Malignidad / malignancy")
    _matrix(axes[1], metrics.density_confusion, list(DENSITY_CLASSES), "Densidad ACR / density")
    _matrix(axes[2], metrics.birads_confusion, [str(c) for c in BIRADS_CLASSES], "BI-RADS")
    fig.text(0.5, 0.01, "Validación; modelo de demostración con datos sintéticos / validation; demonstration model, synthetic data",
             ha="center", fontsize=7, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history: Sequence[EpochRecord], path: Path) -> Path:
    """Training and validation loss per epoch, with validation AUC and density accuracy."""
    plt = _pyplot()
    epochs = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    ax.plot(epochs, [r.train_loss for r in history], marker="o", label="pérdida entrenamiento / train loss")
    ax.plot(epochs, [r.val_loss for r in history], marker="o", label="pérdida validación / val loss")
    ax.set_xlabel("época / epoch")
    ax.set_ylabel("pérdida / loss")
    right = ax.twinx()
    right.plot(epochs, [r.metrics.malignancy_auc for r in history], color="#2a9d8f", ls="--", marker="s", label="AUC val")
    right.plot(epochs, [r.metrics.density_accuracy for r in history], color="#e76f51", ls=":", marker="^",
               label="exactitud densidad / density acc.")
    right.set_ylim(0, 1.02)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="center right")
    ax.set_title("Entrenamiento / training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(
    folder: Path, labels: np.ndarray, scores: np.ndarray, metrics: Metrics,
    thresholds: Thresholds | None, history: Sequence[EpochRecord],
) -> list[Path]:
    """Write ``roc.png``, ``confusion.png`` and ``loss.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_confusion(metrics, folder / "confusion.png"), plot_history(history, folder / "loss.png")]
    known = labels >= 0
    if known.any() and 0 < int(labels[known].sum()) < int(known.sum()):
        paths.insert(0, plot_roc(labels, scores, metrics.malignancy_auc, thresholds, folder / "roc.png"))
    return paths


class CardData(BaseModel):
    """Everything the model card states."""

    model_name: str
    version: str
    backbone: str
    parameters: int
    checkpoint_file: str
    checkpoint_bytes: int
    trained_on: str
    data_summary: dict[str, dict[str, int]]
    config: TrainConfig
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    training_seconds: float
    validation: Metrics
    thresholds: Thresholds
    calibration: Metrics | None = None
    temperature: float = 1.0
    ood_threshold: float | None = None
    ood_description: str = ""
    holdout: Metrics | None = None
    holdout_description: str = ""
    plots_folder: str = "plots"
    reproduce: str = ""
    notes: list[str] = []


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _ci(value: float | None, interval: tuple[float, float] | None) -> str:
    shown = _fmt(value)
    return f"{shown} ({interval[0]:.3f}–{interval[1]:.3f})" if interval is not None and shown != "—" else shown


def _metrics_rows(name: str, m: Metrics) -> str:
    return (
        f"| {name} | {m.breasts} | {m.malignant} | {_ci(m.malignancy_auc, m.malignancy_auc_ci)} | "
        f"{m.exams} | {_ci(m.exam_auc, m.exam_auc_ci)} | {_fmt(m.malignancy_accuracy)} | "
        f"{_fmt(m.sensitivity_at_90_specificity)} | {_fmt(m.density_accuracy)} | {_fmt(m.birads_accuracy)} |"
    )


#: Where ``mdd evaluate --robustness --card`` writes its table.
ROBUSTNESS_START: Final[str] = "<!-- robustness:start -->"
ROBUSTNESS_END: Final[str] = "<!-- robustness:end -->"

PRETRAINED_NOTE: Final[str] = (
    "Pesos preentrenados / pretrained weights: ninguno; no pueden descargarse aquí y la red se construye con "
    "`weights=None`. Con EfficientNet-B0 preentrenada en ImageNet (`--backbone efficientnet_b0`) la red partiría "
    "de filtros de bordes y texturas ya aprendidos: en mastografía real eso suele dar mejor AUC con menos datos y "
    "menos épocas, sobre todo con pocos casos malignos. Un hospital que tenga el archivo oficial de torchvision "
    "(`efficientnet_b0_rwightman-7f5810bc.pth`) lo carga en la red base antes de entrenar: "
    "`net = TwoViewNet('efficientnet_b0'); net.features.load_state_dict({k.removeprefix('features.'): v for k, v in "
    "torch.load(path).items() if k.startswith('features.')})`, y entrena con una tasa de aprendizaje menor "
    "(1e-4 a 3e-4). / None: they cannot be downloaded here and the network is built with `weights=None`. An "
    "ImageNet-pretrained EfficientNet-B0 would start from learned edge and texture filters, which on real "
    "mammograms usually means a better AUC with less data and fewer epochs, especially with few malignant cases. "
    "A hospital with torchvision's official file loads it into the backbone before training (code above) and "
    "trains with a lower learning rate."
)


def _table(matrix: list[list[int]], names: Sequence[str]) -> str:
    head = "| verdadero \\ predicho / true \\ predicted | " + " | ".join(names) + " |"
    rule = "|---|" + "---|" * len(names)
    rows = [f"| **{n}** | " + " | ".join(str(v) for v in row) + " |" for n, row in zip(names, matrix)]
    return "\n".join([head, rule, *rows])


def model_card(card: CardData) -> str:
    """The model card as Markdown (Spanish first, then English)."""
    t = card.thresholds
    lines = [
        f"# Ficha del modelo / model card: `{card.model_name}` {card.version}",
        "",
        f"> **{DISCLAIMER_ES}**",
        ">",
        f"> **{DISCLAIMER_EN}**",
        "",
        "## Uso previsto / intended use",
        "",
        "Demostrar el flujo completo de Mexican Deep DICOM (recepción, preprocesamiento, inferencia, semáforo "
        "de triaje, notificación) con un modelo que sí aprendió algo, sobre estudios sintéticos. Fuera de "
        "alcance: cualquier decisión clínica, tamizaje real, priorización de pacientes reales.",
        "",
        "Demonstrate the whole Mexican Deep DICOM flow (ingest, preprocessing, inference, triage light, "
        "notification) with a model that did learn something, on synthetic studies. Out of scope: any clinical "
        "decision, real screening, prioritising real patients. Synthetic phantoms share only a caricature of "
        "real anatomy and lesions; performance on real mammograms is unknown and expected to be poor.",
        "",
        "## Modelo / model",
        "",
        "- Arquitectura / architecture: TwoViewNet (CC + MLO de una mama por una red base compartida, "
        "características concatenadas, cabezas de malignidad, BI-RADS 0-6 y densidad ACR A-D) / shared "
        "backbone over both views of one breast, fused features, three heads.",
        f"- Red base / backbone: `{card.backbone}` ({card.parameters:,} parámetros / parameters), sin pesos "
        f"preentrenados / no pretrained weights.",
        "- Entrada / input: recortes 336 x 224 en mapa de color magma de `shared.imaging.pipeline.preprocess_view` "
        "(el mismo preprocesamiento que el servicio / the service's own preprocessing).",
        f"- Archivo / file: `{card.checkpoint_file}` ({card.checkpoint_bytes / 1e6:.2f} MB).",
        "",
        "## Datos / data",
        "",
        f"{card.trained_on}",
        "",
        "| conjunto / set | mamas / breasts | estudios / studies | malignas / malignant | A | B | C | D |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in card.data_summary.items():
        lines.append(
            f"| {name} | {s.get('breasts', 0)} | {s.get('studies', 0)} | {s.get('malignant', 0)} | "
            f"{s.get('density_A', 0)} | {s.get('density_B', 0)} | {s.get('density_C', 0)} | {s.get('density_D', 0)} |"
        )
    lines += [
        "",
        LABELS_V2 if "generador 2" in card.trained_on else LABELS_V1,
        "",
        "## Entrenamiento / training",
        "",
        f"- Épocas / epochs: {card.epochs_run} (mejor / best: {card.best_epoch}"
        f"{', parada temprana / early stop' if card.stopped_early else ''}), {card.training_seconds / 60:.1f} min.",
        f"- Configuración / configuration: `{card.config.model_dump_json()}`",
    ]
    if card.reproduce:
        lines += ["", "Reproducir / reproduce:", "", "```bash", card.reproduce, "```"]
    lines += [
        "",
        "## Métricas por mama / breast-level metrics",
        "",
        "Intervalos de 95 % por bootstrap (1000 remuestreos; las mamas se remuestrean por estudio) / bootstrap 95 % "
        "intervals (1,000 resamples; breasts resampled by study). Examen / exam: la mama más sospechosa del "
        "estudio / the study's most suspicious breast.",
        "",
        "| conjunto / set | mamas / breasts | malignas / malignant | AUC por mama / per breast | exámenes / exams | "
        "AUC por examen / per exam | exactitud / accuracy (0.5) | sens. @ 90 % espec. | exactitud densidad / "
        "density acc. | exactitud BI-RADS / acc. |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _metrics_rows("validación / validation", card.validation),
    ]
    if card.calibration is not None:
        lines.append(_metrics_rows("calibración / calibration", card.calibration))
    if card.holdout is not None:
        lines.append(_metrics_rows("prueba aparte / held-out", card.holdout))
        if card.holdout_description:
            lines += ["", card.holdout_description]
    lines += [
        "",
        "## Calibración / calibration",
        "",
        f"- Temperatura de la puntuación de malignidad / malignancy score temperature: {card.temperature:.3f} "
        "(ajustada en las mamas de calibración y ya incluida en la cabeza de malignidad / fitted on the "
        "calibration breasts and folded into the malignancy head).",
    ]
    if card.ood_threshold is not None:
        lines.append(
            f"- Control de distribución / distribution check: `ood_threshold` = {card.ood_threshold:.4g}. "
            f"{card.ood_description}. Una mama por encima nunca es ROJO ni VERDE / a breast above it is never RED "
            "or GREEN."
        )
    lines += [
        "",
        "## Umbrales del semáforo de triaje / triage light thresholds",
        "",
        f"Calibrados en calibración / calibrated on calibration: **ROJO / RED: puntuación ≥ {t.high:.4f}** "
        f"(sensibilidad ≥ {t.red_sensitivity:.0%}), **VERDE / GREEN: puntuación < {t.low:.4f}** "
        f"(ROJO o AMARILLO con sensibilidad ≥ {t.yellow_sensitivity:.0%} / RED or YELLOW at that sensitivity). "
        "Se guardan en el checkpoint (`triage_high`, `triage_low`) y el servicio infer los usa salvo que "
        "el hospital fije `MDD_TRIAGE_HIGH`/`MDD_TRIAGE_LOW` / stored in the checkpoint and used by the infer "
        "service unless the hospital sets them explicitly.",
        "",
        "| conjunto / set | umbral / threshold | sensibilidad / sensitivity | especificidad / specificity |",
        "|---|---|---|---|",
    ]
    for set_name, metrics in (("calibración / calibration", card.calibration), ("validación / validation", card.validation),
                              ("prueba aparte / held-out", card.holdout)):
        if metrics is None:
            continue
        for key, point in metrics.triage.items():
            lines.append(f"| {set_name} | {key} | {_ci(point.sensitivity, point.sensitivity_ci)} | "
                         f"{_ci(point.specificity, point.specificity_ci)} |")
    lines += [
        "",
        "## Matrices de confusión (validación) / confusion matrices (validation)",
        "",
        "Densidad / density:",
        "",
        _table(card.validation.density_confusion, list(DENSITY_CLASSES)),
        "",
        "Malignidad con corte 0.5 / malignancy at a 0.5 cut-off:",
        "",
        _table(card.validation.malignancy_confusion, ["0", "1"]),
        "",
        f"![ROC]({card.plots_folder}/roc.png)",
        f"![confusión / confusion]({card.plots_folder}/confusion.png)",
        f"![pérdida / loss]({card.plots_folder}/loss.png)",
        "",
        "## Robustez / robustness",
        "",
        ROBUSTNESS_START,
        "Sin medir todavía: `mdd evaluate --robustness --card` escribe aquí la tabla / not measured yet.",
        ROBUSTNESS_END,
        "",
        "## Limitaciones / limitations",
        "",
        f"- {PRETRAINED_NOTE}",
        "- Solo fantomas sintéticos (`shared/synth_v2.py`, `shared/synth.py`, `shared/synth_labels.py`); ninguna "
        "imagen real. / Synthetic phantoms only; no real image.",
        "- Las lesiones sintéticas son caricaturas; una red que las distingue no sabe leer mastografías. / "
        "Synthetic lesions are caricatures; telling them apart is not reading mammograms.",
        "- BI-RADS 0 y 6 nunca aparecen en el entrenamiento. / BI-RADS 0 and 6 never occur in training.",
        "- Métricas por mama; el semáforo del estudio toma la mama más sospechosa. / Breast-level metrics; "
        "the study light follows the most suspicious breast.",
    ]
    lines += [f"- {note}" for note in card.notes]
    lines += ["", f"_Generado / generated {datetime.now(timezone.utc):%Y-%m-%d} por / by `mdd train`._", ""]
    return "\n".join(lines)


def write_model_card(card: CardData, path: Path) -> Path:
    """Write the model card to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card(card), encoding="utf-8")
    return path


__all__ = [
    "CardData",
    "PRETRAINED_NOTE",
    "ROBUSTNESS_END",
    "ROBUSTNESS_START",
    "DISCLAIMER_EN",
    "DISCLAIMER_ES",
    "PLOT_NAMES",
    "model_card",
    "plot_confusion",
    "plot_history",
    "plot_roc",
    "write_model_card",
    "write_plots",
]
