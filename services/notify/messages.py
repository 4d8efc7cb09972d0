"""Message text from Jinja2 templates (``templates/{es,en}/``), per event and channel kind.

E-mail, webhooks and chat get a subject and a full body. SMS gets one short line rendered from
``SmsFacts`` only — accession number, light, link and the model notice — so no patient name,
CURP or free text can reach a phone, whatever else the caller knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from shared.events import Light, StudyFailed, StudyInferred, StudyOverdue
from shared.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("es", "en")

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    autoescape=False,  # plain text, never HTML
    trim_blocks=True,
    lstrip_blocks=True,
)


class SmsFacts(BaseModel):
    """Everything an SMS may say. Anything else in the context is dropped before rendering."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    link: str
    accession: str = "-"
    hospital_id: str = ""
    light: Light | None = None
    stage: str | None = None
    count: int | None = None
    date: str | None = None
    disclaimer_present: bool = False
    model_trained: bool = True


class Rendered(BaseModel):
    """A rendered message: subject (empty for SMS) and body."""

    subject: str
    body: str


def study_link(settings: Settings, hospital_id: str, study_uid: str) -> str:
    """Where a user opens the study: ``public_base_url/studies/{uid}?hospital_id=...`` (a UID alone may
    name studies of two hospitals)."""
    return f"{settings.public_base_url.rstrip('/')}/studies/{study_uid}?{urlencode({'hospital_id': hospital_id})}"


def board_link(settings: Settings) -> str:
    """The traffic-light board."""
    return f"{settings.public_base_url.rstrip('/')}/"


def render(template: str, kind: str, language: str, context: dict[str, Any]) -> Rendered:
    """Render ``template`` (inferred, failed, overdue, digest) for a channel kind and a language."""
    if kind == "sms":
        facts = SmsFacts.model_validate({**context, "accession": context.get("accession") or "-"})
        text = _env.get_template(f"{language}/{template}.sms.j2").render(facts.model_dump())
        return Rendered(subject="", body=" ".join(text.split()))
    subject = _env.get_template(f"{language}/{template}.subject.j2").render(context)
    body = _env.get_template(f"{language}/{template}.body.j2").render(context)
    return Rendered(subject=" ".join(subject.split()), body=body.strip() + "\n")


def _envelope(settings: Settings, event: StudyInferred | StudyFailed | StudyOverdue) -> dict[str, Any]:
    return {
        "study_uid": event.study_uid,
        "accession": event.accession_number,
        "hospital_id": event.hospital_id,
        "link": study_link(settings, event.hospital_id, event.study_uid),
    }


def inferred_context(settings: Settings, event: StudyInferred) -> dict[str, Any]:
    """What the result templates may use."""
    return _envelope(settings, event) | {
        "light": event.triage_light,
        "reason": event.triage_reason,
        "breasts": [
            {"laterality": b.laterality, "score": b.malignancy_score, "birads": b.birads, "density": b.density}
            for b in event.breasts
        ],
        "model_name": event.model_name,
        "model_version": event.model_version,
        "model_trained": event.model_trained,
        "model_trained_on": event.model_trained_on,
        "disclaimer": event.disclaimer,
        "disclaimer_present": bool(event.disclaimer.strip()),
    }


def failed_context(settings: Settings, event: StudyFailed) -> dict[str, Any]:
    """What the failure templates may use."""
    return _envelope(settings, event) | {"stage": event.stage, "reason": event.reason}


def overdue_context(settings: Settings, event: StudyOverdue) -> dict[str, Any]:
    """What the overdue templates may use."""
    return _envelope(settings, event) | {"stage": event.stage, "minutes": max(1, round(event.deadline_seconds / 60))}
