"""Storage Commitment SCP: a modality asks us to commit what it sent before deleting it (pynetdicom and Orthanc as the SCU).

Success only for what we hold durably; a reason for the rest; the report on the same association
when the modality keeps it open, on a new one when it has left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from shared.settings import DicomDestination, Settings
from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import storescu
from tests.integration.test_pacs_results import remove_from_orthanc
from tests.integration.conftest import ingest_running

MG = "1.2.840.10008.5.1.4.1.1.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"


def references(study: SyntheticStudy) -> list[tuple[str, str]]:
    return [(str(v.dataset.SOPClassUID), str(v.dataset.SOPInstanceUID)) for v in study.views]


def action_information(transaction_uid: str, refs: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = []
    for sop_class, sop_instance in refs:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
        ds.ReferencedSOPSequence.append(item)
    return ds


class ReportCatcher:
    """A modality's own SCP for the N-EVENT-REPORT that comes on a new association: what it received."""

    def __init__(self, ae_title: str = "MAMO_SALA1") -> None:
        self.reports: list[Dataset] = []
        self.received = threading.Event()
        self.ae = AE(ae_title=ae_title)
        self.ae.add_supported_context(StorageCommitmentPushModel, ExplicitVRLittleEndian, scu_role=True, scp_role=True)

    def on_report(self, event: evt.Event) -> tuple[int, None]:
        self.reports.append(event.event_information)
        self.received.set()
        return 0x0000, None  # the N-EVENT-REPORT response: status and no reply data set

    def listen(self, port: int):  # type: ignore[no-untyped-def]
        """Start listening on ``port``; the caller shuts the returned server down."""
        return self.ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, self.on_report)])


def wait_for(condition, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


@pytest.fixture
def study(tmp_path: Path) -> SyntheticStudy:
    study = make_study(seed=16_002, hospital_id="HOSP-DEMO")
    study.save(tmp_path / "study")
    return study


async def test_a_modality_that_stays_gets_the_report_on_the_same_association_with_reasons(settings: Settings, study: SyntheticStudy, tmp_path: Path) -> None:
    async with ingest_running(settings) as ctx:
        assert (await asyncio.to_thread(storescu, tmp_path / "study", ctx.settings.dicom_port)).count("(Success)") == 4
        reports: list[tuple[int, Dataset]] = []

        def on_report(event: evt.Event) -> tuple[int, None]:
            reports.append((event.event_type, event.event_information))
            return 0x0000, None

        ae = AE(ae_title="MAMO_SALA1")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", ctx.settings.dicom_port, ae_title="MDD", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        assert assoc.is_established
        unknown = (MG, generate_uid())
        wrong_class = (CT, str(study.views[0].dataset.SOPInstanceUID))
        transaction = generate_uid()
        try:
            status, _ = await asyncio.to_thread(
                assoc.send_n_action, action_information(transaction, [*references(study), unknown, wrong_class]), 1,
                StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1",
            )
            assert status.Status == 0x0000  # the request is accepted; the decision comes in the report
            await asyncio.to_thread(wait_for, lambda: reports)
        finally:
            assoc.release()
    [(event_type, info)] = reports
    assert event_type == 2 and info.TransactionUID == transaction  # some failed
    assert {i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence} == {uid for _, uid in references(study)}
    reasons = {i.ReferencedSOPInstanceUID + "/" + i.ReferencedSOPClassUID: int(i.FailureReason) for i in info.FailedSOPSequence}
    assert reasons == {f"{unknown[1]}/{MG}": 0x0112, f"{wrong_class[1]}/{CT}": 0x0119}  # no such instance, class/instance conflict


async def test_a_modality_that_left_gets_the_report_on_a_new_association(settings: Settings, study: SyntheticStudy, tmp_path: Path) -> None:
    modality_port = free_port()
    reports: list[tuple[str, int, Dataset]] = []
    received = threading.Event()

    def on_report(event: evt.Event) -> tuple[int, None]:
        reports.append((str(event.assoc.requestor.ae_title).strip(), event.event_type, event.event_information))
        received.set()
        return 0x0000, None  # the N-EVENT-REPORT response: status and no reply data set

    modality = AE(ae_title="MAMO_SALA1")
    modality.add_supported_context(StorageCommitmentPushModel, ExplicitVRLittleEndian, scu_role=True, scp_role=True)
    modality.add_requested_context(StorageCommitmentPushModel)
    server = modality.start_server(("127.0.0.1", modality_port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    destinations = {"MAMO_SALA1": DicomDestination(host="127.0.0.1", port=modality_port, ae_title="MAMO_SALA1")}
    try:
        async with ingest_running(settings.model_copy(update={"dicom_destinations": destinations})) as ctx:
            assert (await asyncio.to_thread(storescu, tmp_path / "study", ctx.settings.dicom_port)).count("(Success)") == 4
            assoc = modality.associate("127.0.0.1", ctx.settings.dicom_port, ae_title="MDD")
            transaction = generate_uid()
            status, _ = await asyncio.to_thread(
                assoc.send_n_action, action_information(transaction, references(study)), 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1",
            )
            assoc.release()  # leaves at once, as most modalities do
            assert status.Status == 0x0000
            assert await asyncio.to_thread(received.wait, 30)
    finally:
        server.shutdown()
    [(caller, event_type, info)] = reports
    assert caller == ctx.settings.ae_title and event_type == 1 and info.TransactionUID == transaction
    assert len(info.ReferencedSOPSequence) == 4 and "FailedSOPSequence" not in info


async def test_a_report_the_modality_could_not_take_is_sent_again_once_it_listens(
    settings: Settings, study: SyntheticStudy, tmp_path: Path
) -> None:
    modality_port = free_port()
    catcher = ReportCatcher()
    requester = AE(ae_title="MAMO_SALA1")
    requester.add_requested_context(StorageCommitmentPushModel)
    destinations = {"MAMO_SALA1": DicomDestination(host="127.0.0.1", port=modality_port, ae_title="MAMO_SALA1")}
    async with ingest_running(settings.model_copy(update={"dicom_destinations": destinations})) as ctx:
        assert (await asyncio.to_thread(storescu, tmp_path / "study", ctx.settings.dicom_port)).count("(Success)") == 4
        assoc = requester.associate("127.0.0.1", ctx.settings.dicom_port, ae_title="MDD")
        transaction = generate_uid()
        status, _ = await asyncio.to_thread(
            assoc.send_n_action, action_information(transaction, references(study)), 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1",
        )
        assoc.release()
        assert status.Status == 0x0000
        from sqlmodel import Session

        from services.ingest.tables import PendingCommitmentReport, commitment_report_id
        from shared.reliability.claims import PENDING

        def tried_and_pending() -> bool:
            with Session(ctx.engine) as session:
                row = session.get(PendingCommitmentReport, commitment_report_id(settings.hospital_id, "MAMO_SALA1", transaction))
                return row is not None and row.retries >= 1 and row.status == PENDING

        await asyncio.to_thread(wait_for, tried_and_pending)  # the modality is away: kept, not dropped
        server = catcher.listen(modality_port)
        try:
            assert await asyncio.to_thread(catcher.received.wait, 60)
        finally:
            server.shutdown()
    [info] = catcher.reports
    assert info.TransactionUID == transaction and len(info.ReferencedSOPSequence) == 4


async def test_orthanc_as_the_modality_commits_a_study_it_sent_us(orthanc, settings: Settings, study: SyntheticStudy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api = orthanc.http_url
    own = make_study(seed=16_004, hospital_id="HOSP-DEMO")
    own.save(tmp_path / "own")
    assert (await asyncio.to_thread(storescu, tmp_path / "own", orthanc.dicom_port, orthanc.ae_title)).count("(Success)") == 4
    orthanc_id = next(m["ID"] for m in httpx.post(f"{api}/tools/lookup", content=own.study_uid).json() if m["Type"] == "Study")
    destinations = {orthanc.ae_title: DicomDestination(host="127.0.0.1", port=orthanc.dicom_port, ae_title=orthanc.ae_title)}
    try:
        async with ingest_running(settings.model_copy(update={"dicom_destinations": destinations})) as ctx:
            httpx.put(f"{api}/modalities/MDD", json={"AET": "MDD", "Host": "127.0.0.1", "Port": ctx.settings.dicom_port}).raise_for_status()
            sent = await asyncio.to_thread(
                httpx.post, f"{api}/modalities/MDD/store", json={"Resources": [orthanc_id], "StorageCommitment": True, "Synchronous": True}, timeout=120,
            )
            assert sent.status_code == 200, sent.text
            transaction = sent.json()["StorageCommitmentTransactionUID"]

            def settled() -> dict | None:
                report = httpx.get(f"{api}/storage-commitment/{transaction}").json()
                return report if report["Status"] != "Pending" else None

            report = await asyncio.to_thread(wait_for, settled)
            assert report["Status"] == "Success" and len(report["Success"]) == 4 and report["Failures"] == []
            assert len(ctx.store.list_keys(ctx.settings.bucket_dicom, f"HOSP-DEMO/{own.study_uid}/")) == 4
    finally:
        httpx.delete(f"{api}/modalities/MDD")
        remove_from_orthanc(api, own.study_uid)


async def test_two_hospitals_reusing_a_transaction_uid_each_get_their_own_report(
    settings: Settings, study: SyntheticStudy, tmp_path: Path
) -> None:
    """Hospital A holds the study, hospital B does not; their modalities ask with the same Transaction UID
    and are away when the decisions are made. Each report is kept apart and reaches its own modality."""
    from sqlmodel import Session, select

    from services.ingest.tables import PendingCommitmentReport
    from shared.reliability.claims import PENDING
    from shared.settings import Sender

    ports = {"MAMO_SALA1": free_port(), "MAMO_HOSP_B": free_port()}
    destinations = {ae: DicomDestination(host="127.0.0.1", port=port, ae_title=ae) for ae, port in ports.items()}
    senders = {"MAMO_HOSP_B": Sender(hospital_id="HOSP-B", addresses=["127.0.0.1"])}
    transaction = generate_uid()
    async with ingest_running(settings.model_copy(update={"dicom_destinations": destinations, "senders": senders})) as ctx:
        assert (await asyncio.to_thread(storescu, tmp_path / "study", ctx.settings.dicom_port)).count("(Success)") == 4
        for ae_title in ports:
            requester = AE(ae_title=ae_title)
            requester.add_requested_context(StorageCommitmentPushModel)
            assoc = requester.associate("127.0.0.1", ctx.settings.dicom_port, ae_title="MDD")
            status, _ = await asyncio.to_thread(
                assoc.send_n_action, action_information(transaction, references(study)), 1, StorageCommitmentPushModel,
                "1.2.840.10008.1.20.1.1",
            )
            assoc.release()
            assert status.Status == 0x0000

        def both_tried_and_pending() -> list[PendingCommitmentReport]:
            with Session(ctx.engine) as session:
                rows = list(session.exec(select(PendingCommitmentReport).where(PendingCommitmentReport.transaction_uid == transaction)))
            return rows if len(rows) == 2 and all(r.retries >= 1 and r.status == PENDING for r in rows) else []

        rows = await asyncio.to_thread(wait_for, both_tried_and_pending)
        assert {(r.hospital_id, r.calling_ae) for r in rows} == {(settings.hospital_id, "MAMO_SALA1"), ("HOSP-B", "MAMO_HOSP_B")}
        catchers = {ae: ReportCatcher(ae) for ae in ports}
        servers = [catcher.listen(ports[ae]) for ae, catcher in catchers.items()]
        try:
            for catcher in catchers.values():
                assert await asyncio.to_thread(catcher.received.wait, 60)
        finally:
            for server in servers:
                server.shutdown()
    [own] = catchers["MAMO_SALA1"].reports
    assert own.TransactionUID == transaction and len(own.ReferencedSOPSequence) == 4 and "FailedSOPSequence" not in own
    [other] = catchers["MAMO_HOSP_B"].reports  # hospital B never sent the study: none of it is committed for B
    assert other.TransactionUID == transaction and "ReferencedSOPSequence" not in other
    assert {int(item.FailureReason) for item in other.FailedSOPSequence} == {0x0112} and len(other.FailedSOPSequence) == 4


async def test_a_transaction_uid_that_is_not_a_uid_is_refused_with_a_reason(settings: Settings, study: SyntheticStudy) -> None:
    async with ingest_running(settings) as ctx:
        requester = AE(ae_title="MAMO_SALA1")
        requester.add_requested_context(StorageCommitmentPushModel)
        assoc = requester.associate("127.0.0.1", ctx.settings.dicom_port, ae_title="MDD")
        try:
            for bad in ("1.2.3/../4", "9" * 65):
                status, _ = await asyncio.to_thread(
                    assoc.send_n_action, action_information(bad, references(study)), 1, StorageCommitmentPushModel,
                    "1.2.840.10008.1.20.1.1",
                )
                assert status.Status == 0x0106 and str(status.ErrorComment).startswith("TransactionUID: ")
        finally:
            assoc.release()
