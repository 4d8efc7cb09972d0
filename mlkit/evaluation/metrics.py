"""Metrics of a two-view model on labelled breasts, and the calibration of the triage thresholds.

Plain NumPy: ROC curve and AUC (ties count one half), sensitivity at a fixed specificity,
confusion matrices and accuracies. Labels of ``-1`` are unknown and left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from services.infer.model import BIRADS_CLASSES, DENSITY_CLASSES

#: Sensitivity the high (RED) threshold must keep on validation data.
RED_SENSITIVITY: float = 0.95
#: Sensitivity of RED or YELLOW together (the low threshold): almost no malignant breast is GREEN.
YELLOW_SENSITIVITY: float = 0.99


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: one point per distinct score, a breast is positive when ``score >= t``.

    Starts at (0, 0) with threshold ``inf``. Needs both classes.
    """
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        raise ValueError("la curva ROC necesita casos de ambas clases / ROC needs both classes")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y == 1)[last_of_run]
    fps = np.cumsum(y == 0)[last_of_run]
    fpr = np.r_[0.0, fps / neg]
    tpr = np.r_[0.0, tps / pos]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (probability that a positive outscores a negative, ties half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float = 0.9) -> float:
    """Highest sensitivity among the thresholds whose specificity is at least ``specificity``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    allowed = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[allowed].max())


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> float:
    """The cut-off ``t`` (positive when ``score >= t``) keeping at least ``sensitivity``, with margin.

    Of all cut-offs with that sensitivity on these data, the highest ones have the best
    specificity; they form an interval between the highest negative score below the
    k-th lowest positive score and that positive score. The midpoint of the interval is
    returned, so new data slightly off the validation scores keep the same behaviour.
    """
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    positives = np.sort(s[y == 1])
    if positives.size == 0:
        raise ValueError("no hay casos positivos para calibrar / no positive cases to calibrate on")
    misses = int(math.floor((1.0 - sensitivity) * positives.size + 1e-9))
    top = float(positives[misses])
    below = s[(y == 0) & (s < top)]
    bottom = float(below.max()) if below.size else 0.0
    return (top + bottom) / 2.0


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` for class indices ``0 .. n_classes-1``."""
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(matrix, (np.asarray(true, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return matrix.tolist()


class Thresholds(BaseModel):
    """Triage cut-offs of the malignancy score, calibrated on validation breasts."""

    high: float = Field(description="Puntuación ≥ high → ROJO / RED")
    low: float = Field(description="Puntuación < low → VERDE / GREEN")
    red_sensitivity: float = Field(description="Sensibilidad objetivo de ROJO / target sensitivity of RED")
    yellow_sensitivity: float = Field(description="Sensibilidad objetivo de ROJO o AMARILLO / of RED or YELLOW")
    calibrated: bool = Field(True, description="False: sin casos malignos en validación, valores por omisión")


def calibrate_thresholds(
    labels: np.ndarray,
    scores: np.ndarray,
    red_sensitivity: float = RED_SENSITIVITY,
    yellow_sensitivity: float = YELLOW_SENSITIVITY,
) -> Thresholds:
    """High threshold for ``red_sensitivity`` and low threshold for ``yellow_sensitivity`` (low ≤ high).

    Without any malignant breast there is nothing to calibrate on: the defaults 0.5 / 0.2 are
    returned with ``calibrated=False``.
    """
    known = np.asarray(labels) >= 0
    y, s = np.asarray(labels)[known], np.asarray(scores)[known]
    if not (y == 1).any():
        return Thresholds(high=0.5, low=0.2, red_sensitivity=red_sensitivity,
                          yellow_sensitivity=yellow_sensitivity, calibrated=False)
    high = threshold_for_sensitivity(y, s, red_sensitivity)
    low = min(threshold_for_sensitivity(y, s, yellow_sensitivity), high)
    return Thresholds(
        high=round(high, 4),
        low=round(min(low, high), 4),
        red_sensitivity=red_sensitivity,
        yellow_sensitivity=yellow_sensitivity,
    )


class OperatingPoint(BaseModel):
    """Sensitivity and specificity of ``score >= threshold``, with bootstrap 95 % intervals."""

    threshold: float
    sensitivity: float
    specificity: float
    sensitivity_ci: tuple[float, float] | None = None
    specificity_ci: tuple[float, float] | None = None


#: Bootstrap resamples behind every 95 % interval.
BOOTSTRAP_RESAMPLES: int = 1000


def _resamples(groups: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """``n`` resamples of the indices, drawing whole groups (patients or studies) with replacement."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(unique.size)]
    out = []
    for _ in range(n):
        chosen = rng.integers(0, unique.size, unique.size)
        out.append(np.concatenate([members[g] for g in chosen]))
    return out


def _interval(values: list[float]) -> tuple[float, float] | None:
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if finite.size < 10:
        return None
    lo, hi = np.percentile(finite, (2.5, 97.5))
    return (round(float(lo), 4), round(float(hi), 4))


def _auc_or_nan(y: np.ndarray, s: np.ndarray) -> float:
    return roc_auc(y, s) if 0 < int((y == 1).sum()) < y.size else float("nan")


def bootstrap_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
    n: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> tuple[float, float] | None:
    """95 % percentile-bootstrap interval of the AUC, resampling whole ``groups`` (default: each item)."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    g = np.arange(y.size) if groups is None else np.asarray(groups)
    return _interval([_auc_or_nan(y[i], s[i]) for i in _resamples(g, n, seed)])


def operating_point(
    labels: np.ndarray, scores: np.ndarray, threshold: float, groups: np.ndarray | None = None,
    n: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> OperatingPoint:
    """Sensitivity and specificity at ``threshold`` (known labels only), with bootstrap intervals."""
    y, s = np.asarray(labels), np.asarray(scores)
    pos, neg = y == 1, y == 0

    def sens_spec(index: np.ndarray) -> tuple[float, float]:
        p, q = pos[index], neg[index]
        sens = float((s[index][p] >= threshold).mean()) if p.any() else float("nan")
        spec = float((s[index][q] < threshold).mean()) if q.any() else float("nan")
        return sens, spec

    sens, spec = sens_spec(np.arange(y.size))
    draws = [sens_spec(i) for i in _resamples(np.arange(y.size) if groups is None else np.asarray(groups), n, seed)] if n else []
    return OperatingPoint(
        threshold=threshold, sensitivity=sens, specificity=spec,
        sensitivity_ci=_interval([d[0] for d in draws]) if draws else None,
        specificity_ci=_interval([d[1] for d in draws]) if draws else None,
    )


def exam_level(labels: np.ndarray, scores: np.ndarray, study_ids: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per exam (study): malignant when any breast is, scored by its most suspicious breast."""
    order: dict[str, int] = {}
    for study in study_ids:
        order.setdefault(study, len(order))
    y = np.full(len(order), -1, dtype=int)
    s = np.full(len(order), -np.inf)
    for label, score, study in zip(labels, scores, study_ids):
        k = order[study]
        y[k] = max(y[k], int(label))
        s[k] = max(s[k], float(score))
    return y, s, list(order)


class Metrics(BaseModel):
    """Breast-level metrics of one evaluation (NaN where a metric has no data)."""

    breasts: int
    malignant: int
    malignancy_auc: float
    malignancy_accuracy: float = Field(description="Con umbral 0.5 / at a 0.5 cut-off")
    sensitivity_at_90_specificity: float
    birads_accuracy: float
    density_accuracy: float
    malignancy_confusion: list[list[int]] = Field(description="[verdadero][predicho], umbral 0.5 / [true][predicted]")
    birads_confusion: list[list[int]]
    density_confusion: list[list[int]]
    loss: float | None = None
    triage: dict[str, OperatingPoint] = Field(default_factory=dict)
    malignancy_auc_ci: tuple[float, float] | None = Field(None, description="Bootstrap 95 % (per breast, by study)")
    exams: int = 0
    malignant_exams: int = 0
    exam_auc: float = float("nan")
    exam_auc_ci: tuple[float, float] | None = Field(None, description="Bootstrap 95 % (per exam)")

    def headline(self) -> dict[str, float]:
        """The numbers printed per epoch and in the model card."""
        return {
            "malignancy_auc": self.malignancy_auc,
            "malignancy_accuracy": self.malignancy_accuracy,
            "sensitivity_at_90_specificity": self.sensitivity_at_90_specificity,
            "birads_accuracy": self.birads_accuracy,
            "density_accuracy": self.density_accuracy,
        }


def _accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    return float((true == predicted).mean()) if true.size else float("nan")


def compute_metrics(
    malignancy: np.ndarray,
    birads: np.ndarray,
    density: np.ndarray,
    scores: np.ndarray,
    birads_probs: np.ndarray,
    density_probs: np.ndarray,
    *,
    loss: float | None = None,
    thresholds: Sequence[float] = (),
    study_ids: Sequence[str] | None = None,
    intervals: bool = True,
) -> Metrics:
    """Metrics of predicted ``scores`` and class probabilities against the labels (``-1`` unknown).

    ``thresholds`` adds the sensitivity/specificity at each of those cut-offs (key = the value).
    With ``study_ids`` the exam-level AUC is added, and with ``intervals`` every AUC and operating
    point gets its bootstrap 95 % interval (breasts resampled by study, so both breasts of a woman
    move together).
    """
    m_known = malignancy >= 0
    y, s = malignancy[m_known].astype(int), scores[m_known]
    both = y.size > 0 and 0 < int(y.sum()) < y.size
    auc = roc_auc(y, s) if both else float("nan")
    sens90 = sensitivity_at_specificity(y, s, 0.9) if both else float("nan")
    predicted = (s >= 0.5).astype(int)
    b_known, d_known = birads >= 0, density >= 0
    studies = list(study_ids) if study_ids is not None else [str(i) for i in range(malignancy.size)]
    known_studies = [st for st, k in zip(studies, m_known) if k]
    groups = np.asarray(known_studies)
    exam_y, exam_s, _ = exam_level(y, s, known_studies) if study_ids is not None else (np.zeros(0, int), np.zeros(0), [])
    resamples = BOOTSTRAP_RESAMPLES if intervals else 0
    b_pred, d_pred = birads_probs.argmax(axis=1), density_probs.argmax(axis=1)
    return Metrics(
        breasts=int(malignancy.size),
        malignant=int(y.sum()),
        malignancy_auc=auc,
        malignancy_accuracy=_accuracy(y, predicted),
        sensitivity_at_90_specificity=sens90,
        birads_accuracy=_accuracy(birads[b_known], b_pred[b_known]),
        density_accuracy=_accuracy(density[d_known], d_pred[d_known]),
        malignancy_confusion=confusion_matrix(y, predicted, 2),
        birads_confusion=confusion_matrix(birads[b_known], b_pred[b_known], len(BIRADS_CLASSES)),
        density_confusion=confusion_matrix(density[d_known], d_pred[d_known], len(DENSITY_CLASSES)),
        loss=loss,
        triage={f"{t:.4f}": operating_point(y, s, t, groups, n=resamples) for t in thresholds},
        malignancy_auc_ci=bootstrap_auc(y, s, groups, n=resamples) if both and intervals else None,
        exams=len(exam_y),
        malignant_exams=int((exam_y == 1).sum()),
        exam_auc=_auc_or_nan(exam_y, exam_s) if len(exam_y) else float("nan"),
        exam_auc_ci=bootstrap_auc(exam_y, exam_s, n=resamples) if intervals and len(exam_y) else None,
    )


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "Metrics",
    "OperatingPoint",
    "bootstrap_auc",
    "exam_level",
    "RED_SENSITIVITY",
    "Thresholds",
    "YELLOW_SENSITIVITY",
    "calibrate_thresholds",
    "compute_metrics",
    "confusion_matrix",
    "operating_point",
    "roc_auc",
    "roc_curve",
    "sensitivity_at_specificity",
    "threshold_for_sensitivity",
]
