"""The Storage SCP talking DICOM to dcmtk and pynetdicom peers, with bad input among good."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from shared.settings import Settings
from shared.synth import SyntheticStudy
from tests.integration.conftest import ingest_running
from tests.e2e.harness import echoscu_ok, storescu
from infra.servers import dcmtk_tool

MG = "1.2.840.10008.5.1.4.1.1.1.2"


@pytest.fixture
async def scp(running_ingest):  # type: ignore[no-untyped-def]
    return running_ingest


def incomplete_file(path: Path, sop_class: str = MG) -> Path:
    """A file with a valid DICOM header whose data set lacks the study and series identifiers."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.3.999"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with open(path, "wb") as handle:
        handle.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(handle, meta, enforce_standard=True)
        for tag, value in ((b"\x08\x00\x16\x00", sop_class.encode()), (b"\x08\x00\x18\x00", b"1.2.3.999\x00")):
            handle.write(tag + b"UI" + len(value).to_bytes(2, "little") + value)
        handle.write(b"\x10\x00\x10\x00PN\x08\x00PRUEBA^A")
    return path


def send_path(port: int, path: Path, sop_class: str = MG) -> int:
    ae = AE(ae_title="MAMO_SALA1")
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="MDD")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


async def test_storescu_study_is_stored_and_published(scp, study_folder: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    port = scp.settings.dicom_port
    assert await asyncio.to_thread(echoscu_ok, port)
    output = await asyncio.to_thread(storescu, study_folder, port)
    assert output.count("Received Store Response (Success)") == 4
    await scp.bus.drain()
    types = [json.loads(p)["event_type"] for _, p in scp.bus.sent]
    assert types.count("instance.stored") == 4 and types.count("study.completed") == 1
    assert len(scp.store.list_keys("dicom", f"HOSP-DEMO/{four_view_study.study_uid}/")) == 4


async def test_incomplete_instance_is_refused_and_the_scp_keeps_serving(scp, tmp_path: Path, study_folder: Path) -> None:  # type: ignore[no-untyped-def]
    port = scp.settings.dicom_port
    status = await asyncio.to_thread(send_path, port, incomplete_file(tmp_path / "bad.dcm"))
    assert status == 0xA900
    assert scp.bus.sent == []
    output = await asyncio.to_thread(storescu, study_folder, port)
    assert output.count("Received Store Response (Success)") == 4


async def test_unknown_called_ae_title_is_rejected(scp, study_folder: Path) -> None:  # type: ignore[no-untyped-def]
    result = await asyncio.to_thread(
        subprocess.run,
        [dcmtk_tool("echoscu"), "-aec", "OTRO_AE", "127.0.0.1", str(scp.settings.dicom_port)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr


@pytest.fixture
async def strict_scp(settings: Settings):  # type: ignore[no-untyped-def]
    """An SCP that only admits configured senders."""
    from shared.settings import Sender

    strict = settings.model_copy(
        update={"senders": {"MAMO_SALA1": Sender(hospital_id="HGE-ENSENADA", addresses=["127.0.0.1"])}, "accept_unknown_senders": False}
    )
    async with ingest_running(strict) as ctx:
        yield ctx


async def test_unknown_calling_ae_is_rejected_and_known_one_lands_in_its_hospital(strict_scp, study_folder: Path, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    port = strict_scp.settings.dicom_port
    refused = await asyncio.to_thread(
        subprocess.run,
        [dcmtk_tool("echoscu"), "-aet", "INTRUSO", "-aec", "MDD", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    output = await asyncio.to_thread(storescu, study_folder, port)  # calling AE MAMO_SALA1
    assert output.count("Received Store Response (Success)") == 4
    assert len(strict_scp.store.list_keys("dicom", f"HGE-ENSENADA/{four_view_study.study_uid}/")) == 4


async def test_a_known_ae_title_from_an_address_not_its_own_is_refused(settings: Settings) -> None:
    from shared.settings import Sender

    elsewhere = settings.model_copy(update={"senders": {"MAMO_SALA1": Sender(hospital_id="HGE-ENSENADA", addresses=["192.0.2.10"])}})
    async with ingest_running(elsewhere):
        forged = await asyncio.to_thread(
            subprocess.run,
            [dcmtk_tool("echoscu"), "-aet", "MAMO_SALA1", "-aec", "MDD", "127.0.0.1", str(elsewhere.dicom_port)],
            capture_output=True,
            text=True,
        )
    assert forged.returncode != 0
    assert "Calling AE Title Not Recognized" in forged.stdout + forged.stderr


async def test_free_space_below_the_reserve_refuses_associations_with_a_reason(settings: Settings, study_folder: Path) -> None:
    greedy = settings.model_copy(update={"min_free_bytes": 1 << 60})
    async with ingest_running(greedy):
        result = await asyncio.to_thread(
            subprocess.run,
            [dcmtk_tool("echoscu"), "-aec", "MDD", "127.0.0.1", str(greedy.dicom_port)],
            capture_output=True,
            text=True,
        )
    assert result.returncode != 0
    assert "Rejected Transient" in result.stdout + result.stderr


async def test_dicom_tls_with_certificates_the_test_makes(settings: Settings, tmp_path: Path, four_view_study: SyntheticStudy) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    secure = settings.model_copy(update={"dicom_tls_cert": tmp_path / "cert.pem", "dicom_tls_key": tmp_path / "key.pem"})
    async with ingest_running(secure):
        client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        authority.configure_trust(client_context)

        def send_over_tls() -> int:
            ae = AE(ae_title="MAMO_SALA1")
            ae.add_requested_context(MG, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", secure.dicom_port, ae_title="MDD", tls_args=(client_context, "127.0.0.1"))
            assert assoc.is_established
            try:
                return int(assoc.send_c_store(four_view_study.views[0].dataset).Status)
            finally:
                assoc.release()

        assert await asyncio.to_thread(send_over_tls) == 0x0000
        # A plain (non-TLS) peer cannot talk to it.
        plain = await asyncio.to_thread(echoscu_ok, secure.dicom_port)
        assert not plain


async def test_twenty_five_simultaneous_associations_are_served(scp) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor
    import threading

    from shared.synth import make_view, study_identity

    barrier = threading.Barrier(25)
    views = [make_view(laterality="L", view="CC", seed=500 + i, study=study_identity(seed=500 + i)) for i in range(25)]

    def one_modality(index: int) -> int:
        ae = AE(ae_title=f"MAMO_{index:02d}")
        ae.add_requested_context(MG, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", scp.settings.dicom_port, ae_title="MDD")
        assert assoc.is_established, f"association {index} refused"
        try:
            barrier.wait(timeout=60)  # all 25 are open at the same moment
            return int(assoc.send_c_store(views[index].dataset).Status)
        finally:
            assoc.release()

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = await asyncio.get_running_loop().run_in_executor(None, lambda: list(pool.map(one_modality, range(25))))
    assert statuses == [0x0000] * 25
    await scp.bus.drain()
    assert [json.loads(p)["event_type"] for _, p in scp.bus.sent].count("instance.stored") == 25
