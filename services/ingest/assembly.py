"""Study assembly rules, pure: when is a study complete?"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

STANDARD_VIEWS: frozenset[tuple[str, str]] = frozenset({("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")})
_VIEW_ALIASES = {"ML": "MLO", "MLO": "MLO", "CC": "CC", "XCCL": "CC", "XCCM": "CC"}


def normalise_view(view_position: str | None) -> str | None:
    """Map a ViewPosition value to CC or MLO (``None`` for other or missing views)."""
    return _VIEW_ALIASES.get((view_position or "").strip().upper())


def has_standard_views(views: Iterable[tuple[str | None, str | None]]) -> bool:
    """True when R-CC, L-CC, R-MLO and L-MLO are all present."""
    present = {((laterality or "").upper(), normalise_view(view)) for laterality, view in views}
    return STANDARD_VIEWS <= present


def view_label(laterality: str | None, view_position: str | None) -> str:
    """A compact label of a view, e.g. ``L-MLO`` (``?`` for what is missing)."""
    return f"{(laterality or '?').upper()}-{normalise_view(view_position) or (view_position or '?').upper()}"


def parse_view_label(label: str) -> tuple[str | None, str | None]:
    """The (laterality, view) of a label made by ``view_label``."""
    laterality, _, view = label.partition("-")
    return (None if laterality == "?" else laterality), (None if view == "?" else view)


def quiet_since(last_instance_at: datetime, now: datetime, quiet_seconds: float) -> bool:
    """True when no instance of the study arrived for ``quiet_seconds``."""
    return as_utc(now) - as_utc(last_instance_at) >= timedelta(seconds=quiet_seconds)


def as_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (databases without time zones return naive UTC values)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
