"""The study state machine and both traffic lights, derived only from events (pure).

Progress only moves forward: an event that arrives late, twice or out of order never moves a
study backwards. ``failed`` and ``overdue`` are flags over the progress, cleared by later progress.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from shared.events import (
    Event,
    InstanceStored,
    Light,
    NotificationSent,
    StudyCompleted,
    StudyFailed,
    StudyInferred,
    StudyOverdue,
    StudyPreprocessed,
    StudyReported,
)

State = Literal[
    "receiving", "completed", "preprocessing", "preprocessed", "inferring", "ready", "notified", "reported", "failed", "overdue"
]
PROGRESS: tuple[str, ...] = (
    "receiving", "completed", "preprocessing", "preprocessed", "inferring", "ready", "notified", "reported"
)
RESULTS_STATES = frozenset({"ready", "notified", "reported"})
STATUS_LABELS: dict[str, str] = {
    "receiving": "Recibiendo / receiving",
    "completed": "En análisis / being analysed",
    "preprocessing": "En análisis / being analysed",
    "preprocessed": "En análisis / being analysed",
    "inferring": "En análisis / being analysed",
    "ready": "Resultados disponibles / results available",
    "notified": "Resultados notificados / results notified",
    "reported": "Reportado / reported",
    "failed": "Falla / failed",
    "overdue": "Retrasado / overdue",
}


@dataclass(frozen=True)
class StudyView:
    """What the status API knows about a study at one moment."""

    progress: str = "receiving"
    failed: bool = False
    failure_reason: str | None = None
    overdue: bool = False
    triage_light: Light | None = None

    @property
    def state(self) -> State:
        """The state shown to users: failed or overdue override the progress until it moves on."""
        if self.failed:
            return "failed"
        if self.overdue and self.progress not in RESULTS_STATES:
            return "overdue"
        return self.progress  # type: ignore[return-value]

    @property
    def status_light(self) -> Light:
        """RED = waiting, overdue or failed; YELLOW = being analysed; GREEN = results available."""
        state = self.state
        if state in RESULTS_STATES:
            return "GREEN"
        if state in ("receiving", "failed", "overdue"):
            return "RED"
        return "YELLOW"


_PROGRESS_OF: dict[type[Event], str] = {
    InstanceStored: "receiving",
    StudyCompleted: "completed",
    StudyPreprocessed: "preprocessed",
    StudyInferred: "ready",
    StudyReported: "reported",
}


def _rank(progress: str) -> int:
    return PROGRESS.index(progress)


def apply_event(view: StudyView, event: Event) -> StudyView:
    """The study after ``event``; idempotent and never moves progress backwards."""
    if isinstance(event, StudyFailed):
        if view.progress in RESULTS_STATES:
            return view
        return replace(view, failed=True, failure_reason=f"{event.stage}: {event.reason}")
    if isinstance(event, StudyOverdue):
        return view if view.progress in RESULTS_STATES else replace(view, overdue=True)
    if isinstance(event, StudyInferred):
        view = replace(view, triage_light=event.triage_light)
    if isinstance(event, NotificationSent):
        target = "notified" if event.status == "sent" else view.progress
    else:
        target = _PROGRESS_OF.get(type(event), view.progress)
    if _rank(target) > _rank(view.progress):
        return replace(view, progress=target, failed=False, failure_reason=None, overdue=False)
    return view
