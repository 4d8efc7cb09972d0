"""The notification rules file: what it accepts, and the clear start-up errors for what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.errors import ConfigurationError
from shared.settings import Settings
from services.cli import app
from services.notify.config import load_rulebook, load_rules_file

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
sms_gateway = "twiliogws://AC1:secret@sms.example.mx/+526460000000"
[hospitals.H1.recipients]
onco = { name = "Oncología", channels = ["+526461110001", "onco@h1.mx"] }
ti = { language = "en", channels = ["jsons://hooks.h1.mx/mdd", "tgram://123456:ABCdef/987"] }
[[hospitals.H1.rules]]
id = "red"
event = "study.inferred"
lights = ["RED"]
recipients = ["onco"]
channels = ["sms"]
[[hospitals.H1.rules]]
id = "it"
event = "study.failed"
recipients = ["ti"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_rules_file(write(tmp_path, text), Settings())
    message = str(caught.value)
    assert message.startswith("Reglas de notificación inválidas / invalid notification rules")
    return message


def test_a_good_file_resolves_shorthands_to_apprise_urls_of_the_right_kind(tmp_path: Path) -> None:
    settings = Settings(smtp_host="smtp.h1.mx", smtp_port=2525)
    book = load_rules_file(write(tmp_path, GOOD), settings)
    red, it = book.hospitals["H1"].rules
    [onco] = red.recipients
    sms, email = onco.channels
    assert (sms.kind, sms.target, sms.url) == ("sms", "+526461110001", "twiliogws://AC1:secret@sms.example.mx/+526460000000/+526461110001")
    assert (email.kind, email.target) == ("email", "onco@h1.mx") and email.url.startswith("mailto://smtp.h1.mx:2525?")
    assert [c.kind for c in red.channels_of(onco)] == ["sms"]  # the rule only uses SMS
    [ti] = it.recipients
    assert ti.language == "en" and [c.kind for c in ti.channels] == ["webhook", "chat"]
    assert all("ABCdef" not in c.target for c in ti.channels)  # targets never show credentials
    assert book.for_hospital("H1") is book.hospitals["H1"] and book.for_hospital("OTHER") is None


def test_the_shipped_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDD_SMS_ACCOUNT_SID", "AC0001")
    monkeypatch.setenv("MDD_SMS_AUTH_TOKEN", "token")
    book = load_rules_file(ROOT / "docs" / "notify-rules.example.toml", Settings())
    events = {rule.event for rule in book.hospitals["HGE-ENSENADA"].rules}
    assert events == {"study.inferred", "study.failed", "study.overdue", "daily_digest"}
    assert book.for_hospital("ANY-OTHER") is book.hospitals["*"]
    assert "token" in book.hospitals["HGE-ENSENADA"].rules[0].recipients[0].channels[0].url


def test_unknown_event_is_named_in_both_languages(tmp_path: Path) -> None:
    message = problems_of(tmp_path, GOOD.replace('event = "study.failed"', 'event = "study.lost"'))
    assert "hospitals.H1.rules.1.event" in message
    assert "evento desconocido / unknown event 'study.lost'" in message


def test_unknown_recipient_reference_is_refused(tmp_path: Path) -> None:
    message = problems_of(tmp_path, GOOD.replace('recipients = ["ti"]', 'recipients = ["ti", "nadie"]'))
    assert "destinatarios inexistentes / rule 'it' names unknown recipients: nadie" in message


def test_bad_apprise_url_and_bad_channel_are_refused_with_their_place(tmp_path: Path) -> None:
    message = problems_of(tmp_path, GOOD.replace('"tgram://123456:ABCdef/987"', '"nosuchservice://x", "not a channel"'))
    assert "hospitals.H1.recipients.ti.channels.1: URL de apprise inválida / invalid apprise URL: nosuchservice://" in message
    assert "hospitals.H1.recipients.ti.channels.2: Canal no reconocido / unrecognised channel 'not a channel'" in message


def test_phone_without_gateway_and_bad_gateway_url_are_refused(tmp_path: Path) -> None:
    without = GOOD.replace('sms_gateway = "twiliogws://AC1:secret@sms.example.mx/+526460000000"', "")
    assert "sin pasarela" in problems_of(tmp_path, without)
    no_sender = GOOD.replace("twiliogws://AC1:secret@sms.example.mx/+526460000000", "twiliogws://AC1:secret@sms.example.mx")
    assert "URL de pasarela SMS inválida / invalid SMS gateway URL" in problems_of(tmp_path, no_sender)


def test_syntax_errors_wrong_fields_and_zones_are_refused(tmp_path: Path) -> None:
    assert "TOML inválido / invalid TOML" in problems_of(tmp_path, "hospitals = [")
    assert "'lights' solo aplica a study.inferred" in problems_of(tmp_path, GOOD.replace('event = "study.failed"', 'event = "study.failed"\nlights = ["RED"]'))
    assert "'at' (HH:MM) es obligatorio solo en daily_digest" in problems_of(tmp_path, GOOD.replace('event = "study.failed"', 'event = "daily_digest"'))
    assert "zona horaria desconocida / unknown time zone 'Marte/Olympus'" in problems_of(tmp_path, 'timezone = "Marte/Olympus"\n' + GOOD)
    assert "hospitals.H1.recipients.onco.language" in problems_of(tmp_path, GOOD.replace('name = "Oncología"', 'language = "fr"'))
    assert "colour" in problems_of(tmp_path, GOOD.replace('id = "red"', 'id = "red"\ncolour = "red"'))


def test_missing_environment_variables_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDD_TEST_SMS_TOKEN", raising=False)
    message = problems_of(tmp_path, GOOD.replace("AC1:secret", "AC1:${MDD_TEST_SMS_TOKEN}"))
    assert "variables de entorno sin definir / undefined environment variables: MDD_TEST_SMS_TOKEN" in message


def test_without_a_file_the_email_settings_are_the_rules() -> None:
    book = load_rulebook(Settings(notify_emails=["a@h.mx"], notify_red_emails=["b@h.mx"]))
    rules = book.for_hospital("ANY")
    assert rules is not None
    assert [(r.id, r.event, r.lights, [x.id for x in r.recipients]) for r in rules.rules] == [
        ("result_ready", "study.inferred", None, ["a@h.mx"]),
        ("triage_red", "study.inferred", frozenset({"RED"}), ["b@h.mx"]),
        ("study_failed", "study.failed", None, ["a@h.mx"]),
    ]


def test_a_bad_rules_file_stops_the_notify_service_with_exit_code_2(tmp_path: Path) -> None:
    rules = write(tmp_path, GOOD.replace('event = "study.failed"', 'event = "study.lost"'))
    result = CliRunner().invoke(
        app,
        ["serve", "notify"],
        env={
            "MDD_TRANSPORT": "memory", "MDD_STORE_BACKEND": "local", "MDD_DATA_DIR": str(tmp_path / "var"),
            "MDD_NOTIFY_RULES_FILE": str(rules), "MDD_LOG_JSON": "false", "COLUMNS": "300",
        },
    )
    assert result.exit_code == 2, result.output
    assert "invalid notification rules" in result.output and "study.lost" in result.output


def test_an_empty_rules_file_variable_means_the_e_mail_settings_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes MDD_NOTIFY_RULES_FILE through, empty when the hospital has no rules file yet.
    monkeypatch.setenv("MDD_NOTIFY_RULES_FILE", "")
    monkeypatch.setenv("MDD_NOTIFY_EMAILS", '["guardia@hospital.example.mx"]')
    settings = Settings()
    assert settings.notify_rules_file is None
    assert load_rulebook(settings) == load_rulebook(Settings(notify_emails=["guardia@hospital.example.mx"]))
