"""Who may open an association: configured senders, source addresses, the free-space reserve."""

from shared.settings import Sender, Settings
from services.ingest.admission import CALLING_AE_NOT_RECOGNISED, REJECTED_PERMANENT, REJECTED_TRANSIENT, admit

PLENTY = 10 * 1024**3


def configured(**overrides: object) -> Settings:
    return Settings(
        senders={"MAMO_SALA1": Sender(hospital_id="HGE-ENSENADA", addresses=["10.1.2.3"]), "PACS": Sender(hospital_id="HGR-TIJUANA")},
        accept_unknown_senders=False,
        min_free_bytes=1024**3,
        **overrides,  # type: ignore[arg-type]
    )


def test_known_sender_from_its_address_is_admitted_and_mapped_to_its_hospital() -> None:
    settings = configured()
    assert admit(settings, "MAMO_SALA1", "10.1.2.3", PLENTY).accepted
    assert admit(settings, "PACS", "192.0.2.9", PLENTY).accepted  # no address list: any address
    assert settings.hospital_for_calling_ae("MAMO_SALA1") == "HGE-ENSENADA"
    assert settings.hospital_for_calling_ae("PACS") == "HGR-TIJUANA"


def test_unknown_calling_ae_is_rejected_permanently_as_not_recognised() -> None:
    decision = admit(configured(), "INTRUSO", "10.1.2.3", PLENTY)
    assert not decision.accepted
    assert (decision.result, decision.diagnostic) == (REJECTED_PERMANENT, CALLING_AE_NOT_RECOGNISED)
    assert "INTRUSO" in decision.reason


def test_known_ae_from_another_address_is_rejected() -> None:
    decision = admit(configured(), "MAMO_SALA1", "10.9.9.9", PLENTY)
    assert not decision.accepted and "10.9.9.9" in decision.reason


def test_unknown_senders_are_welcome_in_the_default_embedded_setup() -> None:
    assert admit(Settings(min_free_bytes=0), "CUALQUIERA", "127.0.0.1", PLENTY).accepted


def test_low_free_space_rejects_transiently_so_the_modality_retries_later() -> None:
    decision = admit(configured(), "MAMO_SALA1", "10.1.2.3", 1024)
    assert not decision.accepted and decision.result == REJECTED_TRANSIENT
    assert "reserve" in decision.reason
