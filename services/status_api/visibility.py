"""What each role may read of a study's events (the timeline) and of its notification log.

Administrators and doctors read every field. Hospital staff and reading providers read an explicit
allowlist per event type: never the report text (it names the patient), the pseudonymous patient key
(it links a patient's studies), and, for providers (outside the hospital), neither who reported, who was
notified nor which modality sent the images. A field that is in no list is withheld from them, so a
field added to an event later stays hidden until someone decides otherwise (a unit test asks for that
decision for every field of every event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.status_api.security import IDENTITY_ROLES, Principal

#: The envelope every event shares (``shared.events.Event``); the study summary already shows these.
ENVELOPE = frozenset({
    "event_id", "event_type", "schema_version", "occurred_at", "study_uid", "hospital_id", "correlation_id",
    "producer", "accession_number",
})

#: Fields hospital staff and providers both read, per event type (besides the envelope).
SHARED: dict[str, frozenset[str]] = {
    "instance.stored": frozenset({
        "sop_instance_uid", "series_instance_uid", "sop_class_uid", "transfer_syntax_uid", "modality", "laterality",
        "view_position", "object_key", "size_bytes", "sha256",
    }),
    "study.completed": frozenset({"reason", "views"}),
    "study.preprocessed": frozenset({"segmentation_backend", "views", "quality_flags"}),
    "study.inferred": frozenset({
        "breasts", "triage_light", "triage_reason", "model_name", "model_version", "model_trained", "model_trained_on",
        "disclaimer", "regions", "not_evaluated",
    }),
    "study.failed": frozenset({"stage", "reason"}),
    "study.overdue": frozenset({"stage", "deadline_seconds"}),
    "study.reported": frozenset({"birads"}),
    "notification.sent": frozenset({"rule", "channel", "status"}),
}

#: Fields the hospital's own staff read besides ``SHARED`` (people and machines of their hospital).
STAFF_ONLY: dict[str, frozenset[str]] = {
    "instance.stored": frozenset({"calling_ae"}),
    "study.reported": frozenset({"reporter"}),
    "notification.sent": frozenset({"recipient", "detail"}),
}

#: Fields only administrators and doctors read: the patient's identity or what links or names it.
IDENTITY_ONLY: dict[str, frozenset[str]] = {
    "instance.stored": frozenset({"patient_key"}),
    "study.completed": frozenset({"patient_key"}),
    "study.reported": frozenset({"text"}),
}

WITHHELD_NOTICE = "Campos retenidos para este rol / fields withheld for this role"


def allowed_fields(principal: Principal, event_type: str) -> frozenset[str] | None:
    """The payload fields the principal may read of an event type; None means all of them."""
    if principal.role in IDENTITY_ROLES:
        return None
    fields = ENVELOPE | SHARED.get(event_type, frozenset())
    if principal.role == "hospital_staff":
        fields |= STAFF_ONLY.get(event_type, frozenset())
    return fields


def visible_payload(principal: Principal, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An event payload as the principal may read it; withheld field names are listed under ``withheld``."""
    allowed = allowed_fields(principal, str(payload.get("event_type", "")))
    if allowed is None:
        return dict(payload)
    kept = {name: value for name, value in payload.items() if name in allowed}
    withheld = sorted(name for name in payload if name not in allowed)
    if withheld:
        kept["withheld"] = withheld
    return kept


def notification_for(principal: Principal, row: Mapping[str, Any]) -> dict[str, Any]:
    """A notification log entry as the principal may read it (providers do not see who was told, nor why it failed)."""
    entry = dict(row)
    allowed = allowed_fields(principal, "notification.sent")
    if allowed is not None:
        for name in ("recipient", "detail"):
            if name not in allowed:
                entry[name] = ""
    return entry
