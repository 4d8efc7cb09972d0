"""Study-level traffic light (RED / YELLOW / GREEN) from what the gates let through and the model said.

The light never claims more than the model can vouch for:

- RED: a breast the model scored (both views evaluable), in the model's training distribution,
  with a malignancy score ≥ ``high`` (the calibrated rule). The BI-RADS head is reported beside the
  score; it does not decide the light.
- GREEN: only when both breasts were scored, both are in distribution, both scores are below
  ``low`` (and the BI-RADS head does not call either 4-6), no image of the study was left out by a
  gate and no quality flag was raised.
- YELLOW: everything else, with every reason: an image the model may not evaluate ("no evaluable
  por IA: vista magnificada / not evaluable by AI: magnified view"), a breast without two evaluable
  views, a breast unlike the training data (even with a high score), a score in ``[low, high)``,
  a quality flag. RED wins over YELLOW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from services.infer.predictor import BreastPrediction

Light = Literal["RED", "YELLOW", "GREEN"]
Reason = tuple[str, str]
"""A reason in Spanish and in English."""

#: BI-RADS categories that keep a low-scoring breast from GREEN (they never make a light RED).
DISCORDANT_BIRADS: Final[frozenset[int]] = frozenset({4, 5, 6})
SIDES: Final[dict[str, Reason]] = {
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


def _message(prefix_es: str, prefix_en: str, parts: Sequence[Reason]) -> str:
    es = "; ".join(p[0] for p in parts)
    en = "; ".join(p[1] for p in parts)
    return f"{prefix_es}: {es} / {prefix_en}: {en}"


def _side(laterality: str) -> Reason:
    return SIDES.get(laterality, (laterality, laterality))


def unscored_breast(laterality: str) -> Reason:
    """The reason shown for a breast the model did not score."""
    side_es, side_en = _side(laterality)
    return (f"{side_es}: sin dos vistas evaluables (CC y MLO)", f"{side_en}: no two evaluable views (CC and MLO)")


def _distribution_reason(p: BreastPrediction) -> Reason | None:
    """Why a scored breast is not vouched for by the distribution check, if it is not."""
    side_es, side_en = _side(p.laterality)
    if p.ood_score is None:
        return (f"{side_es}, sin control de distribución del modelo", f"{side_en}, no distribution check in the model")
    if not p.in_distribution:
        score = f"{p.ood_score:.2f}"
        return (
            f"{side_es}, imagen distinta de los datos de entrenamiento (distancia {score} > 1); no evaluable por IA",
            f"{side_en}, unlike the training data (distance {score} > 1); not evaluable by AI",
        )
    return None


def triage_light(
    predictions: Sequence[BreastPrediction],
    thresholds: TriageThresholds,
    not_evaluated: Sequence[Reason] = (),
    quality_flags: Sequence[str] = (),
) -> tuple[Light, str]:
    """Traffic light and a bilingual reason (es-MX first, then English) for one study.

    ``predictions`` are the breasts the model scored (both views evaluable); ``not_evaluated``
    the bilingual reasons of every image a gate kept from the model; ``quality_flags`` the
    preprocessing quality warnings. A breast missing from ``predictions`` is named as such.
    """
    suspicious: list[Reason] = []
    indeterminate: list[Reason] = [*not_evaluated]
    for p in predictions:
        side_es, side_en = _side(p.laterality)
        score = _fmt(p.malignancy_score)
        birads = f"BI-RADS {p.birads}"
        distribution = _distribution_reason(p)
        if distribution is not None:
            indeterminate.append(
                (f"{distribution[0]} (puntuación {score}, {birads})", f"{distribution[1]} (score {score}, {birads})")
            )
        elif p.malignancy_score >= thresholds.high:
            high = _fmt(thresholds.high)
            suspicious.append(
                (f"{side_es}, puntuación {score} ≥ {high} ({birads})", f"{side_en}, score {score} ≥ {high} ({birads})")
            )
        elif p.malignancy_score >= thresholds.low:
            rng = f"{_fmt(thresholds.low)}–{_fmt(thresholds.high)}"
            indeterminate.append(
                (f"{side_es}, puntuación {score} en {rng} ({birads})", f"{side_en}, score {score} in {rng} ({birads})")
            )
        elif p.birads in DISCORDANT_BIRADS:
            # The heads disagree: a low score with a suspicious category is not a reassurance.
            indeterminate.append(
                (f"{side_es}, puntuación {score} baja pero {birads}", f"{side_en}, score {score} low but {birads}")
            )

    if suspicious:
        return "RED", _message("Sospechoso", "Suspicious", suspicious)

    scored = {p.laterality for p in predictions}
    for side in ("R", "L"):
        if side not in scored:
            indeterminate.append(unscored_breast(side))
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


__all__ = ["DISCORDANT_BIRADS", "Light", "Reason", "SIDES", "TriageThresholds", "triage_light", "unscored_breast"]
