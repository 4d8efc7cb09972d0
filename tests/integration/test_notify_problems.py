"""Problems reach the people who fix them: a failed study reaches IT, an overdue one the administrator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.events import StudyFailed, StudyOverdue, producer
from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.conftest import free_port
from tests.e2e.harness import SmtpSink, body_text, smtp_sink
from tests.integration.test_notify_channels import LoopbackHttp, drained, loopback_http, notify_running, notify_settings, published

PROBLEM_RULES = """admin = { name = "Dirección", channels = ["direccion@hge.example.mx"] }
[[hospitals.HGE.rules]]
id = "study_failed"
event = "study.failed"
recipients = ["it"]
[[hospitals.HGE.rules]]
id = "study_overdue"
event = "study.overdue"
recipients = ["admin"]
"""


@pytest.fixture
def problem_servers() -> Iterator[tuple[SmtpSink, LoopbackHttp]]:
    with smtp_sink(free_port()) as sink, loopback_http() as http:
        yield sink, http


async def test_failed_reaches_it_and_overdue_reaches_the_administrator_once(
    settings: Settings, problem_servers: tuple[SmtpSink, LoopbackHttp], tmp_path: Path, four_view_study: SyntheticStudy
) -> None:
    sink, http = problem_servers
    settings = notify_settings(settings, sink, http, tmp_path, rules=PROBLEM_RULES)
    envelope = {
        "study_uid": four_view_study.study_uid, "hospital_id": "HGE", "correlation_id": "corr-problems",
        "accession_number": four_view_study.accession_number,
    }
    failed = StudyFailed(**envelope, producer=producer("preprocess"), stage="preprocess", reason="DICOM ilegible / unreadable")
    overdue = StudyOverdue(**envelope, producer=producer("status_api"), stage="infer", deadline_seconds=600)
    async with notify_running(settings) as (ctx, _):
        for event in (failed, overdue, failed, overdue):  # each delivered twice
            await ctx.bus.publish(event)
        await drained(ctx)
        reported = published(ctx, "mdd.notification.sent")

    [to_it] = sink.to("ti@hge.example.mx")
    assert "preprocess" in body_text(to_it) and "DICOM ilegible" in body_text(to_it)
    [to_admin] = sink.to("direccion@hge.example.mx")
    assert four_view_study.accession_number in to_admin["Subject"] + body_text(to_admin)
    assert len(sink.messages) == 2 and http.sms() == []
    deliveries = {e["event_id"]: (e["rule"], e["status"]) for e in reported}  # a redelivery reports the same event id
    assert sorted(deliveries.values()) == [("study_failed", "sent"), ("study_overdue", "sent")]
