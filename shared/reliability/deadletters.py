"""Dead letters: a message given up on is kept for the operators and announced on the ``dlq`` topic.

Both happen in the caller's transaction (the row in ``reliability_dead_letter``, the message in the
outbox), together with whatever else gives the message up — the consumer ledger's ``dead`` mark, a
``study.failed`` event, a notification settled ``failed``.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlmodel import Session

from shared.events import DeadLetter, parse_event
from shared.reliability.outbox import add_dead_letter
from shared.reliability.tables import DeadLetterRow


def event_id_of(payload: str) -> str | None:
    """The id of the event a dead letter carries, when its payload is one."""
    try:
        return str(parse_event(payload).event_id)
    except (ValidationError, ValueError):
        return None


def consumer_of(stage: str) -> str:
    """The consumer group of a dead letter's stage (``notify-providers:acme:webhook`` → ``notify-providers``)."""
    return stage.split(":", 1)[0]


def record_dead_letter(session: Session, letter: DeadLetter, topic_prefix: str) -> list[str]:
    """Keep ``letter`` and queue it for the ``dlq`` topic in ``session``; the outbox ids to flush after commit."""
    if session.get(DeadLetterRow, str(letter.dead_letter_id)) is None:
        session.add(DeadLetterRow(
            dead_letter_id=str(letter.dead_letter_id), consumer=consumer_of(letter.stage), source_topic=letter.source_topic,
            event_id=event_id_of(letter.payload), study_uid=letter.study_uid, hospital_id=letter.hospital_id, error=letter.error, attempts=letter.attempts,
            payload=letter.payload, created_at=letter.occurred_at,
        ))
    return [add_dead_letter(session, letter, topic_prefix)]
