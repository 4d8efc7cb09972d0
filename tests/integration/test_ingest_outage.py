"""The Storage SCP through a real MinIO or Kafka outage: 0xA700, then a retry that loses nothing.

The module runs its own MinIO and Kafka (the session's servers are shared and must stay up) and
stops one of them in the middle of a modality's work. What a modality sees: the C-STORE is answered
"out of resources" in bounded time, the SCP still answers C-ECHO, and the same C-STORE sent again
after the server is back succeeds. What an operator checks afterwards: every instance is in MinIO
exactly once and byte for byte, the topic holds one ``instance.stored`` per instance, and the study
completed once.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlmodel import Session, select

from infra.servers import KafkaInfo, S3Info, ServerControl, kafka_server, minio_server
from services.ingest.tables import AssemblingStudy, StoredInstance
from shared.runtime import ServiceContext
from shared.settings import Settings
from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import storescu
from tests.integration.conftest import ingest_running

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PUBLISH_TIMEOUT_S = 6.0
# The modality gives up on a silent SCP after this long; the SCP must answer well before.
MODALITY_DIMSE_TIMEOUT_S = 60.0
EVENTS_DEADLINE_S = 60.0
RETRY_DEADLINE_S = 60.0


InfoT = TypeVar("InfoT", KafkaInfo, S3Info)


@dataclass
class Outage(Generic[InfoT]):
    """A server of this module and the handle that takes it down and brings it back."""

    info: InfoT
    control: ServerControl


@pytest.fixture(scope="module")
def kafka_outage() -> Iterator[Outage[KafkaInfo]]:
    control = ServerControl()
    with kafka_server(control=control) as info:
        yield Outage(info, control)


@pytest.fixture(scope="module")
def minio_outage() -> Iterator[Outage[S3Info]]:
    control = ServerControl()
    with minio_server(control=control) as info:
        yield Outage(info, control)


def _all_up(*outages: Outage[Any]) -> None:
    for outage in outages:
        if not outage.control.running:
            outage.control.start()


@pytest.fixture
def servers(
    kafka_outage: Outage[KafkaInfo], minio_outage: Outage[S3Info]
) -> Iterator[tuple[Outage[KafkaInfo], Outage[S3Info]]]:
    """Both servers up at the start of a test and again after it, whatever the test did."""
    _all_up(kafka_outage, minio_outage)
    yield kafka_outage, minio_outage
    _all_up(kafka_outage, minio_outage)


def distributed_settings(kafka: KafkaInfo, minio: S3Info, postgres_url: str, tmp_path: Path) -> Settings:
    """Ingest on Kafka, MinIO and PostgreSQL, isolated from other tests by its topic/bucket prefix."""
    prefix = f"outage{uuid.uuid4().hex[:8]}"
    return Settings(
        data_dir=tmp_path / "var",
        dicom_port=free_port(),
        api_port=free_port(),
        ingest_http_port=free_port(),
        transport="kafka",
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"{prefix}.",
        store_backend="minio",
        minio_endpoint=minio.endpoint,
        minio_access_key=minio.access_key,
        minio_secret_key=minio.secret_key,
        bucket_dicom=f"{prefix}-dicom",
        bucket_derived=f"{prefix}-derived",
        bucket_results=f"{prefix}-results",
        database_url=postgres_url,
        study_quiet_seconds=3600,  # only the four views may complete the study here
        publish_timeout_seconds=PUBLISH_TIMEOUT_S,
        log_json=False,
    )


@dataclass(frozen=True)
class StoreAnswer:
    """What the modality saw on one association: the C-STORE status and the C-ECHO status after it."""

    store_status: int | None
    echo_status: int | None
    seconds: float


def store_then_echo(port: int, path: Path) -> StoreAnswer:
    """One association, as a modality opens it: C-STORE the file, then C-ECHO on the same association."""
    dataset = dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="MAMO_SALA1")
    ae.dimse_timeout = MODALITY_DIMSE_TIMEOUT_S
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MDD")
    assert assoc.is_established, "la asociación fue rechazada / association refused"
    try:
        started = time.monotonic()
        stored = assoc.send_c_store(path)
        seconds = time.monotonic() - started
        echoed = assoc.send_c_echo() if assoc.is_established else Dataset()
    finally:
        if assoc.is_established:
            assoc.release()
    return StoreAnswer(
        store_status=int(stored.Status) if "Status" in stored else None,
        echo_status=int(echoed.Status) if "Status" in echoed else None,
        seconds=seconds,
    )


def retry_until_stored(port: int, path: Path) -> list[StoreAnswer]:
    """Send the same C-STORE again every couple of seconds, as a modality does, until it succeeds."""
    deadline = time.monotonic() + RETRY_DEADLINE_S
    answers = [store_then_echo(port, path)]
    while answers[-1].store_status != SUCCESS and time.monotonic() < deadline:
        time.sleep(2.0)
        answers.append(store_then_echo(port, path))
    return answers


def split_study(study: SyntheticStudy, tmp_path: Path) -> tuple[Path, list[Path]]:
    """The study as files: the first view alone, and a folder with the other three (sorted)."""
    everything = sorted(study.save(tmp_path / "all"))
    first = tmp_path / "first"
    rest = tmp_path / "rest"
    first.mkdir()
    rest.mkdir()
    shutil.copy(everything[0], first / everything[0].name)
    for path in everything[1:]:
        shutil.copy(path, rest / path.name)
    return first, sorted(rest.iterdir())


async def published_events(bootstrap: str, topic_prefix: str) -> list[dict[str, object]]:
    """Every ``instance.stored`` and ``study.completed`` event on the topics, read from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4()}", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.subscribe([f"{topic_prefix}instance.stored", f"{topic_prefix}study.completed"])
        events: list[dict[str, object]] = []
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                events.extend(json.loads(record.value) for record in records)
        return events
    finally:
        await consumer.stop()


async def events_once_completed(settings: Settings, study_uid: str) -> list[dict[str, object]]:
    """The study's events once ``study.completed`` is on its topic (bounded wait)."""
    deadline = time.monotonic() + EVENTS_DEADLINE_S
    while True:
        events = [e for e in await published_events(settings.kafka_bootstrap, settings.topic_prefix) if e["study_uid"] == study_uid]
        if any(e["event_type"] == "study.completed" for e in events) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.5)


def stored_per_instance(events: list[dict[str, object]]) -> Counter[str]:
    """How many ``instance.stored`` events each SOP Instance UID got."""
    return Counter(str(e["sop_instance_uid"]) for e in events if e["event_type"] == "instance.stored")


def assert_everything_once(ctx: ServiceContext, study: SyntheticStudy, events: list[dict[str, object]]) -> None:
    """What an operator checks after the outage: objects, events, study and database rows, each once."""
    settings = ctx.settings
    sops = {str(view.dataset.SOPInstanceUID): view for view in study.views}
    keys = ctx.store.list_keys(settings.bucket_dicom, f"{study.hospital_id}/{study.study_uid}/")
    assert sorted(key.rsplit("/", 1)[1] for key in keys) == sorted(f"{sop}.dcm" for sop in sops)
    for key in keys:
        stored = dcmread(io.BytesIO(ctx.store.get_bytes(settings.bucket_dicom, key)))
        sent = sops[key.rsplit("/", 1)[1].removesuffix(".dcm")].dataset
        assert stored == sent, f"{key} no es idéntico a lo enviado / differs from what was sent"
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert stored_per_instance(events) == Counter({sop: 1 for sop in sops})
    assert [e["event_type"] for e in events].count("study.completed") == 1
    with Session(ctx.engine) as session:
        rows = session.exec(select(StoredInstance).where(StoredInstance.study_uid == study.study_uid)).all()
        assembled = session.get(AssemblingStudy, (study.hospital_id, study.study_uid))
    assert sorted(row.sop_instance_uid for row in rows) == sorted(sops)
    assert assembled is not None and assembled.completion_reason == "all_views"


async def outage_then_retry(server: Outage, settings: Settings, seed: int, tmp_path: Path) -> None:
    """One view stored, ``server`` down: 0xA700 in time while the SCP keeps serving; ``server`` back:
    the modality's retry and the rest of the study are stored, each instance and event once."""
    study = make_study(seed=seed)
    first, rest = split_study(study, tmp_path)
    async with ingest_running(settings) as ctx:
        port = settings.dicom_port
        assert (await asyncio.to_thread(storescu, first, port)).count("(Success)") == 1

        await asyncio.to_thread(server.control.stop)
        during = await asyncio.to_thread(store_then_echo, port, rest[0])
        assert during.store_status == OUT_OF_RESOURCES
        assert during.seconds < MODALITY_DIMSE_TIMEOUT_S / 2  # answered, not left to the modality's timeout
        assert during.echo_status == SUCCESS  # the SCP keeps serving on the same association

        await asyncio.to_thread(server.control.start)
        retries = await asyncio.to_thread(retry_until_stored, port, rest[0])
        assert [a.store_status for a in retries[:-1]] == [OUT_OF_RESOURCES] * (len(retries) - 1)
        assert retries[-1].store_status == SUCCESS
        output = await asyncio.to_thread(storescu, rest[0].parent, port)  # the modality resends the rest
        assert output.count("(Success)") == 3

        events = await events_once_completed(settings, study.study_uid)
        assert_everything_once(ctx, study, events)


async def test_minio_outage_answers_out_of_resources_and_the_retry_loses_nothing(
    servers: tuple[Outage[KafkaInfo], Outage[S3Info]], postgres_url: str, tmp_path: Path
) -> None:
    kafka, minio = servers
    await outage_then_retry(minio, distributed_settings(kafka.info, minio.info, postgres_url, tmp_path), 5151, tmp_path)


async def test_kafka_outage_answers_out_of_resources_in_time_and_the_retry_publishes_once(
    servers: tuple[Outage[KafkaInfo], Outage[S3Info]], postgres_url: str, tmp_path: Path
) -> None:
    kafka, minio = servers
    await outage_then_retry(kafka, distributed_settings(kafka.info, minio.info, postgres_url, tmp_path), 5252, tmp_path)
