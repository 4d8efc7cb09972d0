"""RIS and HIS channels: how they are written in the rules, and what their messages carry."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.settings import Settings
from shared.synth import make_study
from services.notify.adapters.channels import resolve_channel
from services.notify.config import parse_rules
from services.notify.hl7_result import escape, oru_r01
from services.notify.ris import control_id
from services.notify.rules import notifications_for
from services.notify.study_facts import StudyFacts
from tests.unit.test_pacs_results import inferred


def test_ris_and_fhir_channels_are_urls_of_their_own_kind() -> None:
    ris = resolve_channel("mllp://ris.hospital.mx:2575", Settings(), None)
    fhir = resolve_channel("fhir+https://user:secret@his.hospital.mx/fhir/r4", Settings(), None)
    assert (ris.kind, ris.target) == ("hl7", "mllp://ris.hospital.mx:2575")
    assert (fhir.kind, fhir.target) == ("fhir", "https://his.hospital.mx/fhir/r4")  # no credentials in logs and events
    with pytest.raises(ValueError, match="MLLP"):
        resolve_channel("mllp://ris.hospital.mx", Settings(), None)


def test_the_template_channels_leave_the_ris_to_its_own_sender() -> None:
    book = parse_rules(
        {"hospitals": {"*": {"recipients": {"ris": {"channels": ["mllp://10.0.0.5:2575", "radiologia@hospital.mx"]}},
                             "rules": [{"id": "todos", "event": "study.inferred", "recipients": ["ris"]}]}}},
        Settings(), "test",
    )
    planned = notifications_for(Settings(), inferred(make_study(seed=3)), book)
    assert [n.channel for n in planned] == ["email"]


def test_hl7_free_text_is_escaped_and_a_delivery_keeps_its_control_id() -> None:
    assert escape("A|B^C&D~E\\F") == "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F"
    assert control_id("k") == control_id("k") != control_id("j") and len(control_id("k")) == 20
    study = make_study(seed=3)
    facts = StudyFacts(study.study_uid, "H", "P|1", "H", "GÓMEZ^ANA", "19700101", "F", "ACC^1", "20240101", "101010", "", ())
    message = oru_r01(inferred(study), facts, control_id("k"), datetime(2026, 1, 1, tzinfo=timezone.utc))
    segments = dict(line.split("|", 1) for line in message.split("\r") if line)
    assert segments["PID"].split("|")[2] == "P\\F\\1^^^H" and "GÓMEZ^ANA" in segments["PID"]
    assert segments["ORC"] == "RE|ACC\\S\\1|ACC\\S\\1"
