"""A storage commitment report survives kill -9 of ingest and a modality that is away: it is delivered once both are back.

The modality sends a study, asks for commitment and leaves (as most do); its own SCP is down when the
report is first tried; ingest is then killed with SIGKILL. Restarted, ingest finds the decision it
wrote before its first try and delivers it as soon as the modality listens again.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from shared.synth import SyntheticStudy
from tests.conftest import free_port
from tests.e2e.harness import echoscu_ok, mdd_process, storescu, wait_for
from tests.integration.test_storage_commitment import ReportCatcher, action_information, references


def _report_row(database: Path, transaction: str) -> tuple[int, str] | None:
    """How many times the report was postponed, and its claim's status."""
    try:
        with sqlite3.connect(database) as connection:
            return connection.execute(
                "SELECT retries, status FROM ingest_commitment_report WHERE transaction_uid = ?", (transaction,)
            ).fetchone()
    except sqlite3.Error:
        return None


def test_a_commitment_report_is_delivered_after_a_kill_and_the_modality_coming_back(
    tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy
) -> None:
    dicom_port, http_port, modality_port = free_port(), free_port(), free_port()
    destinations = {"MAMO_SALA1": {"host": "127.0.0.1", "port": modality_port, "ae_title": "MAMO_SALA1"}}
    env = {
        "MDD_TRANSPORT": "memory", "MDD_STORE_BACKEND": "local", "MDD_DATA_DIR": str(tmp_path / "var"),
        "MDD_DICOM_PORT": str(dicom_port), "MDD_INGEST_HTTP_PORT": str(http_port), "MDD_LOG_JSON": "false",
        "MDD_MIN_FREE_BYTES": "0", "MDD_DICOM_DESTINATIONS": json.dumps(destinations),
        "MDD_DEPENDENCY_RETRY_MAX_SECONDS": "1",
    }
    database = tmp_path / "var" / "mdd.db"
    transaction = generate_uid()
    first_log, second_log = tmp_path / "ingest-1.log", tmp_path / "ingest-2.log"
    with mdd_process(["serve", "ingest"], env, first_log) as first:
        wait_for(lambda: echoscu_ok(dicom_port), 90, "ingest", [(first, first_log)])
        assert storescu(study_folder, dicom_port).count("(Success)") == 4
        requester = AE(ae_title="MAMO_SALA1")
        requester.add_requested_context(StorageCommitmentPushModel)
        assoc = requester.associate("127.0.0.1", dicom_port, ae_title="MDD")
        status, _ = assoc.send_n_action(action_information(transaction, references(four_view_study)), 1,
                                        StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        assoc.release()
        assert status.Status == 0x0000
        # The modality's SCP is down: the first try on a new association fails and is written down.
        wait_for(lambda: (row := _report_row(database, transaction)) and row[0] >= 1, 60, "a failed first try", [(first, first_log)])
        first.send_signal(signal.SIGKILL)
        first.wait(30)

    catcher = ReportCatcher()
    server = catcher.listen(modality_port)
    try:
        with mdd_process(["serve", "ingest"], env, second_log) as second:
            wait_for(lambda: catcher.received.is_set(), 90, "the report after the restart", [(second, second_log)])
            wait_for(lambda: (row := _report_row(database, transaction)) and row[1] == "sent", 30, "the report marked delivered")
    finally:
        server.shutdown()
    [info] = catcher.reports
    assert info.TransactionUID == transaction and len(info.ReferencedSOPSequence) == 4 and "FailedSOPSequence" not in info
