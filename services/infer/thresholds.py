"""Which triage thresholds apply to a study: hospital, explicit settings, or the model's calibration.

Order of precedence (first that applies):

1. ``MDD_TRIAGE_HOSPITAL_THRESHOLDS`` (JSON map hospital → ``{"high": .., "low": ..}``) for the
   study's hospital, when that setting exists;
2. ``MDD_TRIAGE_HIGH`` / ``MDD_TRIAGE_LOW`` set explicitly (environment, ``.env`` or arguments;
   setting either one takes both from the settings);
3. the thresholds calibrated on validation data and stored in the checkpoint
   (``triage_high`` / ``triage_low`` metadata);
4. the settings' defaults (0.5 / 0.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from services.infer.triage import TriageThresholds

Origin = Literal["hospital", "settings", "checkpoint", "default"]


class ResolvedThresholds(BaseModel):
    """The thresholds in force and where they came from."""

    high: float
    low: float
    origin: Origin

    def triage(self) -> TriageThresholds:
        """As the triage rule takes them."""
        return TriageThresholds(high=self.high, low=self.low)


def _hospital_entry(settings: Any, hospital_id: str | None) -> tuple[float, float] | None:
    table: Mapping[str, Any] | None = getattr(settings, "triage_hospital_thresholds", None)
    if not table or hospital_id is None or hospital_id not in table:
        return None
    entry = table[hospital_id]
    if isinstance(entry, Mapping):
        return float(entry["high"]), float(entry["low"])
    high, low = entry  # a (high, low) pair
    return float(high), float(low)


def resolve_thresholds(
    settings: Any, calibrated: tuple[float, float] | None, hospital_id: str | None = None
) -> ResolvedThresholds:
    """Thresholds for a study of ``hospital_id`` given the settings and the model's ``(high, low)``."""
    entry = _hospital_entry(settings, hospital_id)
    if entry is not None:
        return ResolvedThresholds(high=entry[0], low=entry[1], origin="hospital")
    explicit = {"triage_high", "triage_low"} & set(getattr(settings, "model_fields_set", set()))
    if explicit:
        return ResolvedThresholds(high=settings.triage_high, low=settings.triage_low, origin="settings")
    if calibrated is not None:
        high, low = calibrated
        return ResolvedThresholds(high=high, low=min(low, high), origin="checkpoint")
    return ResolvedThresholds(high=settings.triage_high, low=settings.triage_low, origin="default")


__all__ = ["ResolvedThresholds", "resolve_thresholds"]
