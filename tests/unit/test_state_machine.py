"""The study state machine and both lights: forward only, whatever the order of events."""

import itertools

import pytest

from shared.events import (
    BreastResult,
    InstanceStored,
    NotificationSent,
    StudyCompleted,
    StudyFailed,
    StudyInferred,
    StudyOverdue,
    StudyPreprocessed,
    producer,
)
from services.status_api.state import StudyView, apply_event

ENVELOPE = dict(study_uid="1.2", hospital_id="H", correlation_id="c", producer=producer("test"))


def stored() -> InstanceStored:
    return InstanceStored(
        **ENVELOPE, sop_instance_uid="1.2.1", series_instance_uid="1.2.9", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG", object_key="k", size_bytes=1, sha256="x", patient_key="p",
    )


def completed() -> StudyCompleted:
    return StudyCompleted(**ENVELOPE, reason="all_views", views=[])


def preprocessed() -> StudyPreprocessed:
    return StudyPreprocessed(**ENVELOPE, segmentation_backend="classic", views=[])


def inferred(light: str = "RED") -> StudyInferred:
    return StudyInferred(
        **ENVELOPE, breasts=[BreastResult(laterality="L", malignancy_score=0.9, birads=4, density="B", views_used=["CC", "MLO"])],
        triage_light=light, triage_reason="r", model_name="m", model_version="1", model_trained=True,
        model_trained_on="synthetic", disclaimer="d",
    )


def notified(status: str = "sent") -> NotificationSent:
    return NotificationSent(**ENVELOPE, rule="result_ready", channel="email", recipient="a@b", status=status)


def run(events) -> StudyView:  # type: ignore[no-untyped-def]
    view = StudyView()
    for event in events:
        view = apply_event(view, event)
    return view


def test_happy_path_states_and_lights() -> None:
    view = StudyView()
    seen = []
    for event in (stored(), completed(), preprocessed(), inferred(), notified()):
        view = apply_event(view, event)
        seen.append((view.state, view.status_light, view.triage_light))
    assert seen == [
        ("receiving", "RED", None),
        ("completed", "YELLOW", None),
        ("preprocessed", "YELLOW", None),
        ("ready", "GREEN", "RED"),
        ("notified", "GREEN", "RED"),
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(5))))
def test_any_order_and_duplicates_reach_the_same_final_state(order) -> None:  # type: ignore[no-untyped-def]
    events = [stored(), completed(), preprocessed(), inferred(), notified()]
    shuffled = [events[i] for i in order]
    final = run(shuffled + shuffled[:2])
    assert (final.state, final.status_light, final.triage_light) == ("notified", "GREEN", "RED")


def test_failure_turns_status_red_and_later_progress_clears_it() -> None:
    view = run([stored(), completed(), StudyFailed(**ENVELOPE, stage="preprocess", reason="bad pixels")])
    assert (view.state, view.status_light) == ("failed", "RED")
    assert view.failure_reason == "preprocess: bad pixels"
    view = apply_event(view, preprocessed())
    assert (view.state, view.failed) == ("preprocessed", False)


def test_failed_notification_does_not_mark_notified() -> None:
    assert run([completed(), preprocessed(), inferred("GREEN"), notified("failed")]).state == "ready"


def test_overdue_is_red_until_results_arrive() -> None:
    view = run([stored(), StudyOverdue(**ENVELOPE, stage="ingest", deadline_seconds=60)])
    assert (view.state, view.status_light) == ("overdue", "RED")
    view = run([stored(), StudyOverdue(**ENVELOPE, stage="ingest", deadline_seconds=60), completed(), preprocessed(), inferred()])
    assert (view.state, view.status_light) == ("ready", "GREEN")
    after = apply_event(view, StudyOverdue(**ENVELOPE, stage="notify", deadline_seconds=60))
    assert after.state == "ready"


def test_a_late_event_of_an_earlier_stage_does_not_clear_a_later_failure() -> None:
    failure = StudyFailed(**ENVELOPE, stage="infer", reason="model crashed")
    for order in ([stored(), completed(), preprocessed(), failure], [failure, preprocessed(), stored(), completed()]):
        view = run(order)
        assert (view.state, view.failure_reason) == ("failed", "infer: model crashed")


def test_a_notice_about_a_problem_before_results_does_not_mark_notified_in_any_order() -> None:
    overdue = StudyOverdue(**ENVELOPE, stage="preprocess", deadline_seconds=600)
    notice = notified()  # the administrator told about the delay, before there were results
    results = inferred("GREEN")
    for order in ([completed(), overdue, notice, preprocessed(), results], [results, notice, preprocessed(), overdue, completed()]):
        assert run(order).state == "ready"


def test_the_latest_inference_sets_the_triage_light_whatever_arrives_last() -> None:
    first, second = inferred("GREEN"), inferred("RED")
    assert run([completed(), first, second]).triage_light == run([completed(), second, first]).triage_light == "RED"
