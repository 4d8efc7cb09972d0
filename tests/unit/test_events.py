"""Event contracts: versioned envelope, round trip through JSON, follow-ups keep the study run."""

import pytest
from pydantic import ValidationError

from shared.events import (
    SCHEMA_VERSION,
    InstanceStored,
    StudyCompleted,
    StudyFailed,
    ViewRef,
    follow_up,
    parse_event,
    producer,
)
from shared.topics import dead_letter_topic, topic_for


def _completed() -> StudyCompleted:
    return StudyCompleted(
        study_uid="1.2.3",
        hospital_id="HGE",
        correlation_id="corr-1",
        accession_number="ACC1",
        producer=producer("ingest"),
        reason="all_views",
        views=[ViewRef(sop_instance_uid="1.2.3.4", series_instance_uid="1.2.3.5", object_key="k", laterality="L", view_position="CC")],
    )


def test_event_round_trips_through_json_to_its_own_class() -> None:
    event = _completed()
    decoded = parse_event(event.model_dump_json())
    assert isinstance(decoded, StudyCompleted)
    assert decoded == event
    assert decoded.schema_version == SCHEMA_VERSION
    assert decoded.occurred_at.tzinfo is not None


def test_unknown_event_type_is_rejected() -> None:
    raw = _completed().model_dump(mode="json") | {"event_type": "study.exploded"}
    with pytest.raises(ValidationError):
        parse_event(str(raw).replace("'", '"'))


def test_follow_up_carries_study_hospital_correlation_and_accession() -> None:
    cause = _completed()
    failed = follow_up(cause, StudyFailed, "preprocess", stage="preprocess", reason="boom")
    assert (failed.study_uid, failed.hospital_id, failed.correlation_id, failed.accession_number) == (
        "1.2.3",
        "HGE",
        "corr-1",
        "ACC1",
    )
    assert failed.event_id != cause.event_id
    assert failed.producer.service == "preprocess"


def test_topics_are_prefixed_event_types() -> None:
    assert topic_for(StudyCompleted, "mdd.") == "mdd.study.completed"
    assert topic_for("instance.stored", "h1.") == "h1.instance.stored"
    assert dead_letter_topic("mdd.") == "mdd.dlq"


def test_instance_event_has_no_patient_identity_fields() -> None:
    fields = set(InstanceStored.model_fields)
    assert not fields & {"patient_name", "patient_id", "curp", "birth_date", "PatientName", "PatientID"}
    assert "patient_key" in fields
