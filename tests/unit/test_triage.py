"""Traffic-light rules over breast predictions."""

from __future__ import annotations

import pytest

from services.infer.predictor import BreastPrediction
from services.infer.triage import TriageThresholds, triage_light

DEFAULT = TriageThresholds()
STRICT = TriageThresholds(high=0.3, low=0.1)


def _pred(laterality: str = "R", score: float = 0.05, birads: int = 1) -> BreastPrediction:
    probs = [0.0] * 7
    probs[birads] = 1.0
    return BreastPrediction(laterality, score, birads, probs, "B", [0.0, 1.0, 0.0, 0.0], ["CC", "MLO"])


def _both(r: BreastPrediction | None = None, l: BreastPrediction | None = None) -> list[BreastPrediction]:
    return [r or _pred("R"), l or _pred("L")]


CASES = [
    # (id, predictions, thresholds, complete, flags, expected light)
    ("all-low", _both(), DEFAULT, True, [], "GREEN"),
    ("score-equals-high", _both(l=_pred("L", 0.5)), DEFAULT, True, [], "RED"),
    ("score-just-below-high", _both(l=_pred("L", 0.4999)), DEFAULT, True, [], "YELLOW"),
    ("score-equals-low", _both(r=_pred("R", 0.2)), DEFAULT, True, [], "YELLOW"),
    ("score-just-below-low", _both(r=_pred("R", 0.1999)), DEFAULT, True, [], "GREEN"),
    ("strict-high", _both(r=_pred("R", 0.35)), STRICT, True, [], "RED"),
    ("strict-low", _both(r=_pred("R", 0.15)), STRICT, True, [], "YELLOW"),
    ("birads-4", _both(r=_pred("R", 0.01, birads=4)), DEFAULT, True, [], "RED"),
    ("birads-5", _both(l=_pred("L", 0.01, birads=5)), DEFAULT, True, [], "RED"),
    ("birads-6", _both(l=_pred("L", 0.01, birads=6)), DEFAULT, True, [], "RED"),
    ("birads-0", _both(r=_pred("R", 0.01, birads=0)), DEFAULT, True, [], "YELLOW"),
    ("birads-3", _both(l=_pred("L", 0.01, birads=3)), DEFAULT, True, [], "YELLOW"),
    ("birads-2", _both(l=_pred("L", 0.01, birads=2)), DEFAULT, True, [], "GREEN"),
    ("incomplete", [_pred("R")], DEFAULT, False, [], "YELLOW"),
    ("quality-flag", _both(), DEFAULT, True, ["blurred"], "YELLOW"),
    ("nothing-analysed", [], DEFAULT, False, [], "YELLOW"),
    ("red-beats-incomplete", [_pred("L", 0.9)], DEFAULT, False, ["low_contrast"], "RED"),
    ("red-beats-birads-3", _both(r=_pred("R", 0.1, birads=3), l=_pred("L", 0.6)), DEFAULT, True, [], "RED"),
]


@pytest.mark.parametrize(
    ("predictions", "thresholds", "complete", "flags", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_triage_rules(
    predictions: list[BreastPrediction],
    thresholds: TriageThresholds,
    complete: bool,
    flags: list[str],
    expected: str,
) -> None:
    light, reason = triage_light(predictions, thresholds, complete, flags)
    assert light == expected
    assert " / " in reason  # Spanish first, English after


def test_red_reason_names_breast_and_score_in_spanish_then_english() -> None:
    light, reason = triage_light(_both(l=_pred("L", 0.83)), DEFAULT, True, [])
    assert light == "RED"
    assert reason == "Sospechoso: mama izquierda, puntuación 0.83 ≥ 0.50 / Suspicious: left breast, score 0.83 ≥ 0.50"


def test_yellow_reason_lists_every_cause() -> None:
    _, reason = triage_light([_pred("R", 0.3, birads=3)], DEFAULT, False, ["blurred"])
    spanish, english = reason.split(" / ")
    for word in ("mama derecha", "BI-RADS 3", "estudio incompleto", "calidad: blurred"):
        assert word in spanish
    for word in ("right breast", "BI-RADS 3", "incomplete study", "quality: blurred"):
        assert word in english


def test_shown_score_never_contradicts_threshold() -> None:
    _, reason = triage_light(_both(r=_pred("R", 0.4999)), DEFAULT, True, [])
    assert "0.49" in reason and "0.50 en" not in reason


@pytest.mark.parametrize(("high", "low"), [(0.2, 0.5), (1.5, 0.2), (0.5, -0.1)])
def test_inconsistent_thresholds_are_rejected(high: float, low: float) -> None:
    with pytest.raises(ValueError):
        TriageThresholds(high=high, low=low)
