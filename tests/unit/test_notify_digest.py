"""The daily digest's calendar and content: which day is due, which studies it lists, in local time."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from shared.db import init_db, make_engine
from shared.settings import Settings
from services.notify.digest import _green_studies, digest_context, due_day, record_green, window
from services.notify.messages import render
from services.notify.tables import GreenStudy
from tests.unit.test_notify_rules import inferred

CDMX, TIJUANA = ZoneInfo("America/Mexico_City"), ZoneInfo("America/Tijuana")
AT = time(7, 30)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_the_due_day_turns_at_the_local_digest_time() -> None:
    # Mexico City is UTC-6 all year: 07:30 local is 13:30 UTC.
    assert due_day(utc(2026, 3, 10, 13, 29), AT, CDMX) == date(2026, 3, 9)
    assert due_day(utc(2026, 3, 10, 13, 30), AT, CDMX) == date(2026, 3, 10)
    # Just after midnight UTC it is still the previous evening in Mexico.
    assert due_day(utc(2026, 3, 11, 2, 0), AT, CDMX) == date(2026, 3, 10)


def test_consecutive_windows_cover_every_moment_once_even_across_a_clock_change() -> None:
    start, end = window(date(2026, 3, 10), AT, CDMX)
    assert (start.astimezone(timezone.utc), end.astimezone(timezone.utc)) == (utc(2026, 3, 9, 13, 30), utc(2026, 3, 10, 13, 30))
    assert window(date(2026, 3, 11), AT, CDMX)[0] == end
    # Tijuana moves its clocks on 2026-03-08: that digest covers 23 hours.
    start, end = window(date(2026, 3, 8), AT, TIJUANA)
    assert end.astimezone(timezone.utc) - start.astimezone(timezone.utc) == timedelta(hours=23)


def test_green_studies_are_recorded_once_and_fall_in_exactly_one_digest(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [GreenStudy])
    start, end = window(date(2026, 3, 10), AT, CDMX)
    at_start = inferred("GREEN").model_copy(update={"study_uid": "1.1", "occurred_at": start})
    at_end = inferred("GREEN").model_copy(update={"study_uid": "1.2", "occurred_at": end})
    assert record_green(engine, at_start) and record_green(engine, at_end)
    assert not record_green(engine, at_start)  # a redelivery records nothing new
    assert not record_green(engine, inferred("RED").model_copy(update={"study_uid": "1.3", "occurred_at": start}))
    assert [s.study_uid for s in _green_studies(engine, start, end, "H")] == ["1.1"]
    assert [s.study_uid for s in _green_studies(engine, *window(date(2026, 3, 11), AT, CDMX), "H")] == ["1.2"]
    assert _green_studies(engine, start, end, "OTHER") == []


def test_digest_lists_each_study_with_local_time_link_and_one_copy_of_the_disclaimer() -> None:
    settings = Settings(public_base_url="https://mdd.h.mx")
    start, end = window(date(2026, 3, 10), AT, CDMX)
    studies = [
        GreenStudy(study_uid=f"1.{i}", hospital_id="H", accession_number=f"ACC{i}", inferred_at=utc(2026, 3, 10, 1, i),
                   model_trained=True, disclaimer="Modelo de demostración entrenado con fantomas sintéticos")
        for i in range(3)
    ]
    context = digest_context(settings, "H", date(2026, 3, 10), start, end, studies, CDMX)
    email = render("digest", "email", "es", context)
    assert email.subject == "[MDD] Resumen diario H 2026-03-10: 3 estudios VERDE"
    assert "2026-03-09 19:02  acceso ACC2  https://mdd.h.mx/studies/1.2" in email.body  # 01:02 UTC = 19:02 the day before
    assert email.body.count("fantomas sintéticos") == 1
    sms = render("digest", "sms", "en", context).body
    assert sms.startswith("MDD H 2026-03-10: 3 GREEN studies. https://mdd.h.mx/") and "synthetic data" in sms
    assert "ACC1" not in sms
