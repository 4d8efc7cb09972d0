"""Ingest's domain without sockets: durable store, events, duplicates, failure statuses."""

from __future__ import annotations

import asyncio
import copy
import io
import json

import pytest
from pydicom import Dataset

from sqlmodel import Session, select

from shared.bus import MemoryBus
from shared.db import init_db, make_engine
from shared.settings import Settings
from shared.store import LocalStore
from shared.synth import SyntheticStudy
from services.ingest.intake import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    SUCCESS,
    Ingest,
)
from services.ingest.tables import AssemblingStudy, StoredInstance
from shared.instance_index import InstanceIndexRow


class FlakyStore(LocalStore):
    """A local store that can be switched off, like a full disk or a MinIO outage."""

    down = False

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        if self.down:
            raise OSError("No space left on device")
        super().put_bytes(bucket, key, data, content_type)


class FlakyBus(MemoryBus):
    """A bus whose broker can be switched off."""

    down = False

    async def _send(self, topic: str, key: str, payload: bytes) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        await super()._send(topic, key, payload)


@pytest.fixture
async def ingest(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.resolved_database_url)
    init_db(engine, [StoredInstance, AssemblingStudy])
    store = FlakyStore(settings.resolved_store_dir)
    store.ensure_buckets([settings.bucket_dicom])
    bus = FlakyBus(settings)
    await bus.start()
    yield Ingest(settings, store, bus, engine)
    await bus.stop()
    engine.dispose()


def events_of(bus: MemoryBus, event_type: str) -> list[dict]:
    return [json.loads(p) for topic, p in bus.sent if topic == f"mdd.{event_type}"]


def encoded(dataset: Dataset) -> bytes:
    """A data set as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def accept(ingest: Ingest, data: bytes, sop_class: str | None = None) -> int:
    return (await asyncio.to_thread(ingest.accept, data, "MAMO1", sop_class)).status


async def test_four_views_are_stored_published_and_complete_the_study_once(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    for view in four_view_study.views:
        assert await accept(ingest, view.to_bytes(), str(view.dataset.SOPClassUID)) == SUCCESS
    stored = events_of(ingest.bus, "instance.stored")  # type: ignore[arg-type]
    assert len(stored) == 4
    assert {e["study_uid"] for e in stored} == {four_view_study.study_uid}
    assert len({e["correlation_id"] for e in stored}) == 1
    completed = events_of(ingest.bus, "study.completed")  # type: ignore[arg-type]
    assert len(completed) == 1 and completed[0]["reason"] == "all_views"
    assert {(v["laterality"], v["view_position"]) for v in completed[0]["views"]} == {("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")}
    keys = ingest.store.list_keys("dicom", f"HOSP-DEMO/{four_view_study.study_uid}/")
    assert len(keys) == 4
    first = four_view_study.views[0]
    assert ingest.store.get_bytes("dicom", stored[0]["object_key"]) == first.to_bytes()  # stored as received
    assert "PRUEBA" not in json.dumps(stored) and str(first.dataset.PatientID) not in json.dumps(stored)


async def test_identical_resend_is_acknowledged_and_stored_once(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    for _ in range(2):
        for view in four_view_study.views:
            assert await accept(ingest, view.to_bytes()) == SUCCESS
    assert len(events_of(ingest.bus, "instance.stored")) == 4  # type: ignore[arg-type]
    assert len(events_of(ingest.bus, "study.completed")) == 1  # type: ignore[arg-type]


async def test_an_acknowledged_instance_is_already_in_the_search_index(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    view = four_view_study.views[0]
    assert await accept(ingest, view.to_bytes()) == SUCCESS
    sop_uid = str(view.dataset.SOPInstanceUID)
    with Session(ingest.engine) as session:  # no consumer has run: the row came with the instance's transaction
        row = session.get(InstanceIndexRow, ("HOSP-DEMO", sop_uid))
    assert row is not None
    assert (row.study_uid, row.hospital_id, row.patient_id) == (four_view_study.study_uid, "HOSP-DEMO", str(view.dataset.PatientID))
    assert (row.rows, row.columns) == (view.dataset.Rows, view.dataset.Columns)
    assert row.metadata_json["00100010"]["Value"][0]["Alphabetic"] == str(view.dataset.PatientName)
    assert "BulkDataURI" in row.metadata_json["7FE00010"]

    changed = copy.deepcopy(view.dataset)
    changed.SeriesDescription = "REENVIADA"
    assert await accept(ingest, encoded(changed)) == SUCCESS  # the same SOP Instance UID, new content
    with Session(ingest.engine) as session:
        rows = session.exec(select(InstanceIndexRow).where(InstanceIndexRow.sop_instance_uid == sop_uid)).all()
    assert [row.series_description for row in rows] == ["REENVIADA"]


async def test_unparseable_data_gets_cannot_understand(ingest: Ingest) -> None:
    assert await accept(ingest, b"this is not DICOM at all" * 10) == CANNOT_UNDERSTAND
    assert ingest.bus.sent == []  # type: ignore[attr-defined]


async def test_missing_identifiers_or_wrong_sop_class_get_a900(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    view = four_view_study.views[0]
    assert await accept(ingest, view.to_bytes(), "1.2.840.10008.5.1.4.1.1.7") == DATASET_DOES_NOT_MATCH_SOP_CLASS
    dataset = copy.deepcopy(view.dataset)
    del dataset.SOPInstanceUID
    from io import BytesIO

    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    assert await accept(ingest, buffer.getvalue()) == DATASET_DOES_NOT_MATCH_SOP_CLASS


async def test_store_outage_answers_out_of_resources_and_retry_succeeds(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    data = four_view_study.views[0].to_bytes()
    ingest.store.down = True  # type: ignore[attr-defined]
    assert await accept(ingest, data) == OUT_OF_RESOURCES
    assert events_of(ingest.bus, "instance.stored") == []  # type: ignore[arg-type]
    ingest.store.down = False  # type: ignore[attr-defined]
    assert await accept(ingest, data) == SUCCESS
    assert len(events_of(ingest.bus, "instance.stored")) == 1  # type: ignore[arg-type]


async def test_broker_outage_answers_out_of_resources_and_retry_is_not_lost(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    data = four_view_study.views[0].to_bytes()
    ingest.bus.down = True  # type: ignore[attr-defined]
    assert await accept(ingest, data) == OUT_OF_RESOURCES
    ingest.bus.down = False  # type: ignore[attr-defined]
    assert await accept(ingest, data) == SUCCESS
    assert len(events_of(ingest.bus, "instance.stored")) == 1  # type: ignore[arg-type]


async def test_quiet_study_completes_once(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    assert await accept(ingest, four_view_study.views[0].to_bytes()) == SUCCESS
    assert await asyncio.to_thread(ingest.complete_quiet_studies) == 0
    await asyncio.sleep(ingest.settings.study_quiet_seconds + 0.1)
    assert await asyncio.to_thread(ingest.complete_quiet_studies) == 1
    assert await asyncio.to_thread(ingest.complete_quiet_studies) == 0
    completed = events_of(ingest.bus, "study.completed")  # type: ignore[arg-type]
    assert len(completed) == 1 and completed[0]["reason"] == "quiet_period" and len(completed[0]["views"]) == 1


async def test_truncated_instance_gets_cannot_understand(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    data = four_view_study.views[0].to_bytes()
    assert await accept(ingest, data[: len(data) - 1000]) == CANNOT_UNDERSTAND
    assert ingest.bus.sent == []  # type: ignore[attr-defined]


async def test_every_bad_input_of_the_corpus_gets_its_status_and_nothing_is_published(ingest: Ingest, four_view_study: SyntheticStudy) -> None:
    from tests.corpus import bad_inputs

    answers = {bad.name: await accept(ingest, bad.data) for bad in bad_inputs(four_view_study.views[0])}
    expected = {bad.name: bad.expected_status for bad in bad_inputs(four_view_study.views[0])}
    assert answers == expected
    assert ingest.bus.sent == []  # type: ignore[attr-defined]


async def test_an_instance_whose_uids_are_not_uids_gets_a900_with_a_reason_and_no_path(
    ingest: Ingest, four_view_study: SyntheticStudy
) -> None:
    from tests.corpus import bad_inputs

    for name in ("uid_con_diagonal.dcm", "uid_de_3000.dcm"):
        [bad] = [b for b in bad_inputs(four_view_study.views[0]) if b.name == name]
        outcome = await asyncio.to_thread(ingest.accept, bad.data, calling_ae="MAMO1")
        assert outcome.status == DATASET_DOES_NOT_MATCH_SOP_CLASS, name
        assert "UID inválido / invalid UID" in outcome.message, outcome.message
        assert str(ingest.settings.data_dir) not in outcome.message and len(outcome.message) < 300
    assert ingest.store.list_keys(ingest.settings.bucket_dicom, "") == []
    assert ingest.bus.sent == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.5.1.4.1.1.1.2", True),
        ("2.25.329800735698586629295641978511506172918", True),
        ("1.2.840.10008.1.2.1\x00", True),  # the padding of an odd-length UI value
        ("1.02.3", True),  # a leading zero (PS3.5 forbids it; legacy modalities write it, and it is harmless as a key)
        ("1." + "2" * 63, False),
        ("1.2.3/4", False),
        ("1..2", False),
        (".1.2", False),
        ("1.2.", False),
        ("1.2.abc", False),
        ("", False),
    ],
)
def test_uids_are_digits_and_dots_of_at_most_64_characters(uid: str, valid: bool) -> None:
    from shared.dicom_uids import uid_problem

    assert (uid_problem(uid) is None) is valid


async def test_a_uid_another_hospital_reuses_is_its_own_study_and_never_touches_the_first_hospitals(
    ingest: Ingest, four_view_study: SyntheticStudy
) -> None:
    from shared.synth import make_study

    def send(data: bytes, hospital: str):  # type: ignore[no-untyped-def]
        return asyncio.to_thread(ingest.accept, data, calling_ae="MAMO1", hospital_id=hospital)

    first = four_view_study.views[0]
    sop_uid = str(first.dataset.SOPInstanceUID)
    assert (await send(first.to_bytes(), "HOSP-A")).status == SUCCESS
    key_a = ingest.store.list_keys(ingest.settings.bucket_dicom, "HOSP-A/")
    bytes_a = ingest.store.get_bytes(ingest.settings.bucket_dicom, key_a[0])

    joins = copy.deepcopy(four_view_study.views[1].dataset)  # hospital A's StudyInstanceUID, a new instance
    replaces = copy.deepcopy(make_study(seed=77).views[0].dataset)  # another content carrying A's Study and SOP Instance UIDs
    replaces.StudyInstanceUID = four_view_study.study_uid
    replaces.SOPInstanceUID = replaces.file_meta.MediaStorageSOPInstanceUID = first.dataset.SOPInstanceUID
    for attempt in (encoded(joins), encoded(replaces)):
        outcome = await send(attempt, "HOSP-B")
        assert outcome.status == SUCCESS, outcome.message

    # Hospital A's object, rows and study are as they were: one instance, its bytes, its index row.
    assert ingest.store.list_keys(ingest.settings.bucket_dicom, "HOSP-A/") == key_a
    assert ingest.store.get_bytes(ingest.settings.bucket_dicom, key_a[0]) == bytes_a
    with Session(ingest.engine) as session:
        studies = session.exec(select(AssemblingStudy).where(AssemblingStudy.study_uid == four_view_study.study_uid)).all()
        assert sorted(study.hospital_id for study in studies) == ["HOSP-A", "HOSP-B"]
        assert [len(study.views_seen) for study in studies if study.hospital_id == "HOSP-A"] == [1]  # B's views never joined
        mine = session.get(StoredInstance, ("HOSP-A", sop_uid))
        theirs = session.get(StoredInstance, ("HOSP-B", sop_uid))
        assert mine is not None and theirs is not None
        assert mine.object_key == key_a[0] and theirs.object_key.startswith("HOSP-B/") and theirs.sha256 != mine.sha256
        indexed = {row.hospital_id: row for row in session.exec(select(InstanceIndexRow).where(InstanceIndexRow.sop_instance_uid == sop_uid))}
        assert indexed["HOSP-A"].object_key == key_a[0] and indexed["HOSP-B"].object_key == theirs.object_key
    # Hospital B's study holds B's two instances, stored under B's folder; each event names its own hospital.
    assert len(ingest.store.list_keys(ingest.settings.bucket_dicom, f"HOSP-B/{four_view_study.study_uid}/")) == 2
    stored = events_of(ingest.bus, "instance.stored")  # type: ignore[arg-type]
    assert sorted((e["hospital_id"], e["sop_instance_uid"] == sop_uid) for e in stored) == [
        ("HOSP-A", True), ("HOSP-B", False), ("HOSP-B", True)]
    assert len({e["event_id"] for e in stored}) == 3


async def test_a_hospital_id_that_is_not_one_path_segment_is_refused_before_anything_is_stored(
    ingest: Ingest, four_view_study: SyntheticStudy
) -> None:
    from pydantic import ValidationError

    from shared.settings import Sender

    # "HOSP/1"'s folder would sit inside hospital "HOSP"'s: it can never name a hospital.
    outcome = await asyncio.to_thread(ingest.accept, four_view_study.views[0].to_bytes(), calling_ae="MAMO1", hospital_id="HOSP/1")
    assert outcome.status == DATASET_DOES_NOT_MATCH_SOP_CLASS and "Hospital inválido" in outcome.message
    assert ingest.store.list_keys(ingest.settings.bucket_dicom, "") == []
    assert events_of(ingest.bus, "instance.stored") == []  # type: ignore[arg-type]
    for bad in ("HOSP/1", "../HOSP", "", "H" * 65):
        with pytest.raises(ValidationError):
            Sender(hospital_id=bad, addresses=["10.1.2.3"])
    assert Sender(hospital_id="HGE-ENSENADA.2_b", addresses=["10.1.2.3"]).hospital_id == "HGE-ENSENADA.2_b"
