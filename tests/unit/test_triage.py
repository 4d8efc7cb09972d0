"""Traffic-light rules: RED only from a scored, in-distribution breast past the calibrated score; GREEN
only when both breasts are scored, in distribution and low; everything else YELLOW with its reasons."""

from __future__ import annotations

import pytest

from services.infer.predictor import BreastPrediction
from services.infer.triage import TriageThresholds, triage_light

DEFAULT = TriageThresholds()
STRICT = TriageThresholds(high=0.3, low=0.1)
MAGNIFIED = ("no evaluable por IA: vista magnificada (mama izquierda CC)",
             "not evaluable by AI: magnified view (left breast CC)")


def _pred(laterality: str = "R", score: float = 0.05, birads: int = 1, ood: float | None = 0.4) -> BreastPrediction:
    probs = [0.0] * 7
    probs[birads] = 1.0
    return BreastPrediction(laterality, score, birads, probs, "B", [0.0, 1.0, 0.0, 0.0], ["CC", "MLO"], ood_score=ood)


def _both(r: BreastPrediction | None = None, l: BreastPrediction | None = None) -> list[BreastPrediction]:
    return [r or _pred("R"), l or _pred("L")]


CASES = [
    # (id, predictions, thresholds, not evaluated, flags, expected light)
    ("all-low", _both(), DEFAULT, [], [], "GREEN"),
    ("score-equals-high", _both(l=_pred("L", 0.5)), DEFAULT, [], [], "RED"),
    ("score-just-below-high", _both(l=_pred("L", 0.4999)), DEFAULT, [], [], "YELLOW"),
    ("score-equals-low", _both(r=_pred("R", 0.2)), DEFAULT, [], [], "YELLOW"),
    ("score-just-below-low", _both(r=_pred("R", 0.1999)), DEFAULT, [], [], "GREEN"),
    ("strict-high", _both(r=_pred("R", 0.35)), STRICT, [], [], "RED"),
    ("strict-low", _both(r=_pred("R", 0.15)), STRICT, [], [], "YELLOW"),
    # The BI-RADS head never makes a light RED; a suspicious category keeps a low score from GREEN.
    ("birads-4-low-score", _both(r=_pred("R", 0.01, birads=4)), DEFAULT, [], [], "YELLOW"),
    ("birads-5-low-score", _both(l=_pred("L", 0.01, birads=5)), DEFAULT, [], [], "YELLOW"),
    ("birads-3-low-score", _both(l=_pred("L", 0.01, birads=3)), DEFAULT, [], [], "GREEN"),
    ("birads-2-high-score", _both(l=_pred("L", 0.9, birads=2)), DEFAULT, [], [], "RED"),
    # Out of distribution: never RED, never GREEN.
    ("ood-high-score", _both(l=_pred("L", 0.95, ood=3.0)), DEFAULT, [], [], "YELLOW"),
    ("ood-low-score", _both(r=_pred("R", 0.01, ood=1.01)), DEFAULT, [], [], "YELLOW"),
    ("no-distribution-check", _both(r=_pred("R", 0.9, ood=None)), DEFAULT, [], [], "YELLOW"),
    ("ood-one-side-red-other", _both(r=_pred("R", 0.9), l=_pred("L", 0.01, ood=5.0)), DEFAULT, [], [], "RED"),
    # Breasts and images the model did not score.
    ("one-breast-scored", [_pred("R")], DEFAULT, [], [], "YELLOW"),
    ("image-not-evaluable", [_pred("R")], DEFAULT, [MAGNIFIED], [], "YELLOW"),
    ("extra-image-not-evaluable", _both(), DEFAULT, [MAGNIFIED], [], "YELLOW"),
    ("red-beats-not-evaluable", [_pred("R", 0.9)], DEFAULT, [MAGNIFIED], [], "RED"),
    ("quality-flag", _both(), DEFAULT, [], ["laterality_missing"], "YELLOW"),
    ("nothing-analysed", [], DEFAULT, [], [], "YELLOW"),
    ("red-beats-quality-flag", [_pred("L", 0.9)], DEFAULT, [], ["view_missing"], "RED"),
]


@pytest.mark.parametrize(
    ("predictions", "thresholds", "not_evaluated", "flags", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_triage_rules(
    predictions: list[BreastPrediction],
    thresholds: TriageThresholds,
    not_evaluated: list[tuple[str, str]],
    flags: list[str],
    expected: str,
) -> None:
    light, reason = triage_light(predictions, thresholds, not_evaluated, flags)
    assert light == expected
    assert " / " in reason  # Spanish first, English after


def test_red_reason_names_breast_score_and_birads_in_spanish_then_english() -> None:
    light, reason = triage_light(_both(l=_pred("L", 0.83, birads=4)), DEFAULT)
    assert light == "RED"
    assert reason == (
        "Sospechoso: mama izquierda, puntuación 0.83 ≥ 0.50 (BI-RADS 4) / "
        "Suspicious: left breast, score 0.83 ≥ 0.50 (BI-RADS 4)"
    )


def test_yellow_reason_lists_every_cause() -> None:
    _, reason = triage_light([_pred("R", 0.3, birads=3)], DEFAULT, [MAGNIFIED], ["laterality_missing"])
    spanish, english = reason.split(" / ")
    for words in ("mama derecha, puntuación 0.30", "vista magnificada", "mama izquierda: sin dos vistas evaluables",
                  "calidad: laterality_missing"):
        assert words in spanish
    for words in ("right breast, score 0.30", "magnified view", "left breast: no two evaluable views",
                  "quality: laterality_missing"):
        assert words in english


def test_an_out_of_distribution_breast_is_named_with_its_distance() -> None:
    light, reason = triage_light(_both(l=_pred("L", 0.97, ood=2.5)), DEFAULT)
    assert light == "YELLOW"
    assert "imagen distinta de los datos de entrenamiento (distancia 2.50 > 1)" in reason
    assert "unlike the training data (distance 2.50 > 1)" in reason


def test_shown_score_never_contradicts_threshold() -> None:
    _, reason = triage_light(_both(r=_pred("R", 0.4999)), DEFAULT)
    assert "0.49" in reason and "0.50 en" not in reason


@pytest.mark.parametrize(("high", "low"), [(0.2, 0.5), (1.5, 0.2), (0.5, -0.1)])
def test_inconsistent_thresholds_are_rejected(high: float, low: float) -> None:
    with pytest.raises(ValueError):
        TriageThresholds(high=high, low=low)
