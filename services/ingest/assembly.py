"""Study assembly rules, pure: when is a study complete?

Views are read through :mod:`shared.dicom_vocabulary`: an ``XCCL`` fills the CC slot and an ``LM``
or ``ML`` the MLO slot, as in every other service.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from shared import dicom_vocabulary as vocabulary
from shared.dicom_vocabulary import parse_view_label, view_label

__all__ = ["as_utc", "has_standard_views", "normalise_view", "parse_view_label", "quiet_since", "view_label"]


def normalise_view(view_position: str | None) -> str | None:
    """The slot (``CC`` or ``MLO``) a ViewPosition value fills; ``None`` for other or missing views."""
    view = vocabulary.view_of(view_position)
    return None if view is None else view.value


def has_standard_views(views: Iterable[tuple[str | None, str | None]]) -> bool:
    """True when R-CC, L-CC, R-MLO and L-MLO are all present (any projection of each slot)."""
    return vocabulary.has_standard_views(views)


def quiet_since(last_instance_at: datetime, now: datetime, quiet_seconds: float) -> bool:
    """True when no instance of the study arrived for ``quiet_seconds``."""
    return as_utc(now) - as_utc(last_instance_at) >= timedelta(seconds=quiet_seconds)


def as_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (databases without time zones return naive UTC values)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
