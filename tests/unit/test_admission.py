"""Who may open an association: configured senders, source addresses, the free-space reserve."""

import pytest
from pydantic import ValidationError

from shared.settings import Sender, Settings
from services.ingest.admission import CALLING_AE_NOT_RECOGNISED, REJECTED_PERMANENT, REJECTED_TRANSIENT, admit

PLENTY = 10 * 1024**3


def configured(**overrides: object) -> Settings:
    return Settings(
        senders={"MAMO_SALA1": Sender(hospital_id="HGE-ENSENADA", addresses=["10.1.2.3"]), "PACS": Sender(hospital_id="HGR-TIJUANA", any_address=True)},
        accept_unknown_senders=False,
        min_free_bytes=1024**3,
        **overrides,  # type: ignore[arg-type]
    )


def test_known_sender_from_its_address_is_admitted_and_mapped_to_its_hospital() -> None:
    settings = configured()
    assert admit(settings, "MAMO_SALA1", "10.1.2.3", PLENTY).accepted
    assert admit(settings, "PACS", "192.0.2.9", PLENTY).accepted  # any_address: an explicit opt-out
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


def test_unknown_senders_are_refused_by_default_once_the_scp_listens_on_the_network() -> None:
    on_the_network = Settings(min_free_bytes=0, dicom_host="0.0.0.0")
    decision = admit(on_the_network, "CUALQUIERA", "10.1.2.3", PLENTY)
    assert not decision.accepted and decision.diagnostic == CALLING_AE_NOT_RECOGNISED
    assert admit(Settings(min_free_bytes=0, dicom_host="0.0.0.0", accept_unknown_senders=True), "CUALQUIERA", "10.1.2.3", PLENTY).accepted


def test_a_sender_without_addresses_is_a_configuration_error_unless_it_opts_out_explicitly() -> None:
    with pytest.raises(ValidationError, match="any_address"):
        Settings(senders={"MAMO_SALA1": {"hospital_id": "HGE-ENSENADA"}})
    opted_out = Settings(senders={"MAMO_SALA1": {"hospital_id": "HGE-ENSENADA", "any_address": True}}, min_free_bytes=0)
    assert admit(opted_out, "MAMO_SALA1", "198.51.100.7", PLENTY).accepted


def test_sender_addresses_may_be_networks_and_ipv4_mapped_peers_match_them() -> None:
    settings = Settings(senders={"MAMO": {"hospital_id": "HGE", "addresses": ["10.1.2.0/24"]}}, min_free_bytes=0)
    assert admit(settings, "MAMO", "10.1.2.77", PLENTY).accepted
    assert admit(settings, "MAMO", "::ffff:10.1.2.77", PLENTY).accepted
    assert not admit(settings, "MAMO", "10.1.3.1", PLENTY).accepted
    with pytest.raises(ValidationError, match="10.1.2.300"):
        Settings(senders={"MAMO": {"hospital_id": "HGE", "addresses": ["10.1.2.300"]}})


def test_low_free_space_rejects_transiently_so_the_modality_retries_later() -> None:
    decision = admit(configured(), "MAMO_SALA1", "10.1.2.3", 1024)
    assert not decision.accepted and decision.result == REJECTED_TRANSIENT
    assert "reserve" in decision.reason


def test_the_polled_pacs_may_send_its_c_move_answers_from_its_own_address_only() -> None:
    settings = Settings(dicom_host="0.0.0.0", pacs_host="127.0.0.1", pacs_ae_title="PACS_HGE", min_free_bytes=0)
    assert admit(settings, "PACS_HGE", "127.0.0.1", PLENTY).accepted
    assert not admit(settings, "PACS_HGE", "10.9.9.9", PLENTY).accepted
