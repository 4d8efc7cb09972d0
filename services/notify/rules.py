"""Who is told what about an event: the rules of its hospital applied to it (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.events import Event, StudyFailed, StudyInferred, StudyOverdue
from shared.settings import Settings
from services.notify.adapters.channels import RESULT_KINDS
from services.notify.config import Recipient, Rule, RuleBook, rules_from_settings
from services.notify.messages import failed_context, inferred_context, overdue_context, render

# Rule event -> (template, context builder) for the events that arrive on topics.
_TEMPLATES = {"study.inferred": "inferred", "study.failed": "failed", "study.overdue": "overdue"}


@dataclass(frozen=True)
class Notification:
    """One message for one recipient on one channel, decided by one rule."""

    rule: str
    channel: str
    recipient: str
    target: str
    subject: str
    body: str
    url: str = field(default="", repr=False)  # carries the channel's credentials: never logged

    @property
    def key_suffix(self) -> str:
        """What makes this notification unique within its study (or digest)."""
        return f"{self.rule}:{self.channel}:{self.recipient}:{self.target}"

    @property
    def label(self) -> str:
        """Recipient and target as logs, events and the notification log show them."""
        return self.recipient if self.recipient == self.target else f"{self.recipient} <{self.target}>"


def _context(settings: Settings, event: Event) -> dict[str, Any] | None:
    if isinstance(event, StudyInferred):
        return inferred_context(settings, event)
    if isinstance(event, StudyFailed):
        return failed_context(settings, event)
    if isinstance(event, StudyOverdue):
        return overdue_context(settings, event)
    return None


def rule_applies(rule: Rule, event: Event) -> bool:
    """Whether ``rule`` fires for ``event`` (its type, and the triage light where the rule names lights)."""
    if rule.event != event.event_type:
        return False
    if rule.lights is not None:
        return isinstance(event, StudyInferred) and event.triage_light in rule.lights
    return True


def messages_for(rule: Rule, recipient: Recipient, template: str, context: dict[str, Any]) -> list[Notification]:
    """One message per channel of the recipient that the rule uses, in the recipient's language."""
    planned = []
    for channel in rule.channels_of(recipient):
        if channel.kind in RESULT_KINDS:
            continue  # results for a RIS or HIS are built by services.notify.ris
        rendered = render(template, channel.kind, recipient.language, context)
        planned.append(
            Notification(rule.id, channel.kind, recipient.id, channel.target, rendered.subject, rendered.body, channel.url)
        )
    return planned


def notifications_for(settings: Settings, event: Event, book: RuleBook | None = None) -> list[Notification]:
    """The notifications an event calls for under ``book`` (default: the rules from the e-mail settings)."""
    book = book or rules_from_settings(settings)
    hospital = book.for_hospital(event.hospital_id)
    context = _context(settings, event)
    if hospital is None or context is None:
        return []
    planned: list[Notification] = []
    for rule in hospital.rules:
        if rule_applies(rule, event):
            for recipient in rule.recipients:
                planned += messages_for(rule, recipient, _TEMPLATES[rule.event], context)
    return planned
