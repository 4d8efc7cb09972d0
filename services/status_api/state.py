"""The study state machine and both traffic lights, derived only from events (pure).

The view is a function of the *set* of events seen, never of their arrival order: applying the
same events in any order, any number of times, gives the same study. Progress only moves forward.
``failed`` and ``overdue`` are flags over the progress: each names the progress that resolves it
(a failure in preprocessing is resolved by ``preprocessed``), so a late event from an earlier stage
never clears a problem of a later one. A problem that the study is already past is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
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
#: The progress that resolves a problem of each stage; any other stage is resolved by results.
#: Problems never outlive results: once a study is ``ready`` it shows GREEN.
STAGE_RESOLVED_BY: dict[str, str] = {"ingest": "completed", "preprocess": "preprocessed", "infer": "ready"}

_PROGRESS_OF: dict[type[Event], str] = {
    InstanceStored: "receiving",
    StudyCompleted: "completed",
    StudyPreprocessed: "preprocessed",
    StudyInferred: "ready",
    StudyReported: "reported",
}


def _rank(progress: str) -> int:
    return PROGRESS.index(progress)


_READY = _rank("ready")


def resolved_by(stage: str) -> int:
    """Rank of the progress that resolves a problem of ``stage`` (e.g. ``preprocess`` or ``notify-failures``)."""
    root = stage.replace("-", ".").replace(":", ".").split(".")[0]
    return min(_rank(STAGE_RESOLVED_BY.get(root, "ready")), _READY)


@dataclass(frozen=True, order=True)
class Problem:
    """A failure or an overdue stage, kept until the study reaches the progress that resolves it."""

    occurred_at: datetime
    event_id: str
    until: int
    reason: str = ""


@dataclass(frozen=True)
class StudyView:
    """What the status API knows about a study: a commutative summary of its events."""

    reached: str = "receiving"
    results_at: datetime | None = None
    last_sent_at: datetime | None = None
    failures: frozenset[Problem] = frozenset()
    overdues: frozenset[Problem] = frozenset()
    triage: tuple[datetime, str, Light] | None = None

    @property
    def progress(self) -> str:
        """How far the study got; ``notified`` needs a notification sent at or after its results."""
        notified = (
            self.results_at is not None and self.last_sent_at is not None and self.last_sent_at >= self.results_at
        )
        if notified and _rank(self.reached) < _rank("notified"):
            return "notified"
        return self.reached

    def _pending(self, problems: frozenset[Problem]) -> list[Problem]:
        rank = _rank(self.progress)
        return sorted(problem for problem in problems if problem.until > rank)

    @property
    def failed(self) -> bool:
        """A stage gave up and the study has not got past that stage since."""
        return bool(self._pending(self.failures))

    @property
    def failure_reason(self) -> str | None:
        """``stage: reason`` of the latest pending failure."""
        pending = self._pending(self.failures)
        return pending[-1].reason if pending else None

    @property
    def overdue(self) -> bool:
        """A stage exceeded its deadline and the study has not got past that stage since."""
        return bool(self._pending(self.overdues))

    @property
    def triage_light(self) -> Light | None:
        """The light of the latest inference (by time, then event id)."""
        return self.triage[2] if self.triage else None

    @property
    def triage_event_id(self) -> str | None:
        """The ``study.inferred`` whose results the study shows."""
        return self.triage[1] if self.triage else None

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


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)


def _latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(a, b)


def _problem(event: StudyFailed | StudyOverdue, reason: str = "") -> Problem:
    return Problem(event.occurred_at, str(event.event_id), resolved_by(event.stage), reason)


def apply_event(view: StudyView, event: Event) -> StudyView:
    """The study after ``event``: idempotent, order-independent, never moves progress backwards.

    A ``notification.sent`` marks the study notified only when it was sent, and at or after the
    study's results: a failed delivery, or a notice about a failure or a delay sent before there
    were results, does not make the study "notified", whatever order the events arrive in.
    """
    if isinstance(event, StudyFailed):
        view = replace(view, failures=view.failures | {_problem(event, f"{event.stage}: {event.reason}")})
    elif isinstance(event, StudyOverdue):
        view = replace(view, overdues=view.overdues | {_problem(event)})
    elif isinstance(event, NotificationSent):
        if event.status == "sent":
            view = replace(view, last_sent_at=_latest(view.last_sent_at, event.occurred_at))
    elif isinstance(event, StudyInferred):
        triage = (event.occurred_at, str(event.event_id), event.triage_light)
        view = replace(
            view,
            results_at=_earliest(view.results_at, event.occurred_at),
            triage=triage if view.triage is None else max(view.triage, triage),
        )
    target = _PROGRESS_OF.get(type(event))
    if target is not None and _rank(target) > _rank(view.reached):
        view = replace(view, reached=target)
    return _forget_resolved(view)


def _forget_resolved(view: StudyView) -> StudyView:
    """Drop problems the study is past (they can never show again): keeps the view small."""
    rank = _rank(view.progress)
    failures = frozenset(p for p in view.failures if p.until > rank)
    overdues = frozenset(p for p in view.overdues if p.until > rank)
    if failures == view.failures and overdues == view.overdues:
        return view
    return replace(view, failures=failures, overdues=overdues)


def fold(events: Iterable[Event]) -> StudyView:
    """The study after all ``events`` (in any order)."""
    view = StudyView()
    for event in events:
        view = apply_event(view, event)
    return view
