"""The one place that knows topic names. Message key = StudyInstanceUID (per-study ordering)."""

from __future__ import annotations

from shared.events import Event

DEAD_LETTER = "dlq"


def topic_for(event_type: str | type[Event], prefix: str) -> str:
    """Topic of an event type, e.g. ``mdd.study.completed``."""
    name = event_type if isinstance(event_type, str) else event_type.model_fields["event_type"].default
    return f"{prefix}{name}"


def dead_letter_topic(prefix: str) -> str:
    """Topic of poison messages, e.g. ``mdd.dlq``."""
    return f"{prefix}{DEAD_LETTER}"


def provider_topic(prefix: str, provider_id: str) -> str:
    """Topic an external provider reads, e.g. ``mdd.provider.acme``."""
    return f"{prefix}provider.{provider_id}"
