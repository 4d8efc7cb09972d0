"""Study-level traffic light (RED / YELLOW / GREEN) from breast predictions.

RED: any breast with BI-RADS 4, 5 or 6, or malignancy score >= ``high``.
YELLOW: otherwise, anything indeterminate: BI-RADS 0 or 3, a score in
``[low, high)``, an incomplete study, a quality flag, or no breast analysed.
GREEN: low suspicion otherwise. RED always wins over YELLOW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from services.infer.predictor import BreastPrediction

Light = Literal["RED", "YELLOW", "GREEN"]

# BI-RADS 6 is known malignancy: never less urgent than 4-5.
SUSPICIOUS_BIRADS: Final[frozenset[int]] = frozenset({4, 5, 6})
INDETERMINATE_BIRADS: Final[frozenset[int]] = frozenset({0, 3})

_SIDE: Final[dict[str, tuple[str, str]]] = {
    "R": ("mama derecha", "right breast"),
    "L": ("mama izquierda", "left breast"),
}


@dataclass(frozen=True)
class TriageThresholds:
    """Malignancy-score cut-offs: ``score >= high`` is RED, ``low <= score < high`` YELLOW."""

    high: float = 0.5
    low: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"Umbrales inválidos / invalid thresholds: low={self.low}, high={self.high}")


def _fmt(score: float) -> str:
    # Truncate, not round, so the shown number never contradicts the comparison
    # (0.499 must not read "0.50 < 0.50"). The epsilon absorbs binary fractions.
    return f"{math.floor(score * 100 + 1e-9) / 100:.2f}"


def _message(prefix_es: str, prefix_en: str, parts: list[tuple[str, str]]) -> str:
    es = "; ".join(p[0] for p in parts)
    en = "; ".join(p[1] for p in parts)
    return f"{prefix_es}: {es} / {prefix_en}: {en}"


def triage_light(
    predictions: Sequence[BreastPrediction],
    thresholds: TriageThresholds,
    complete: bool,
    quality_flags: Sequence[str] = (),
) -> tuple[Light, str]:
    """Traffic light and a bilingual reason (es-MX first, then English) for one study.

    ``complete`` says whether the study had both breasts with both views;
    ``quality_flags`` are the preprocessing quality warnings, if any.
    """
    suspicious: list[tuple[str, str]] = []
    indeterminate: list[tuple[str, str]] = []
    for p in predictions:
        side_es, side_en = _SIDE.get(p.laterality, (p.laterality, p.laterality))
        score = _fmt(p.malignancy_score)
        if p.malignancy_score >= thresholds.high:
            high = _fmt(thresholds.high)
            suspicious.append((f"{side_es}, puntuación {score} ≥ {high}", f"{side_en}, score {score} ≥ {high}"))
        elif p.malignancy_score >= thresholds.low:
            rng = f"{_fmt(thresholds.low)}–{_fmt(thresholds.high)}"
            indeterminate.append((f"{side_es}, puntuación {score} en {rng}", f"{side_en}, score {score} in {rng}"))
        if p.birads in SUSPICIOUS_BIRADS:
            suspicious.append((f"{side_es}, BI-RADS {p.birads}", f"{side_en}, BI-RADS {p.birads}"))
        elif p.birads in INDETERMINATE_BIRADS:
            indeterminate.append((f"{side_es}, BI-RADS {p.birads}", f"{side_en}, BI-RADS {p.birads}"))

    if suspicious:
        return "RED", _message("Sospechoso", "Suspicious", suspicious)

    if not predictions:
        indeterminate.append(("sin mamas analizables", "no breast could be analysed"))
    if not complete:
        indeterminate.append(("estudio incompleto", "incomplete study"))
    if quality_flags:
        flags = ", ".join(quality_flags)
        indeterminate.append((f"calidad: {flags}", f"quality: {flags}"))
    if indeterminate:
        return "YELLOW", _message("Indeterminado", "Indeterminate", indeterminate)

    top = max(predictions, key=lambda p: p.malignancy_score)
    score, low = _fmt(top.malignancy_score), _fmt(thresholds.low)
    return "GREEN", (
        f"Baja sospecha: puntuación máxima {score} < {low} / Low suspicion: highest score {score} < {low}"
    )
