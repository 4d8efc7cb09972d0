"""Two replicas of the status API on one port (``MDD_API_REUSE_PORT``), real Kafka and PostgreSQL.

Kafka splits the projection's partitions between the replicas, so each applies only part of the
events; every live stream, whichever replica it landed on, must still see every study change, also
the changes made while its replica's listening connection was cut.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from sqlalchemy import text
from sqlmodel import Session

from shared.db import init_db, make_engine
from shared.events import InstanceStored, producer, utc_now
from shared.topics import topic_for
from services.status_api.change_feed import CHANNEL, ChangeListener
from services.status_api.live import BROADCASTER
from services.status_api.schemas import StudySummary
from services.status_api.security import Principal
from services.status_api.tables import NotificationRow, StudyEventRow, StudyRow
from tests.conftest import free_port
from tests.e2e.harness import mdd_process, wait_for

API_KEY = "replicas-admin-key-0123456789abcdef"
STUDIES = 24
LIST_CALLS = 20


def stored(index: int) -> InstanceStored:
    uid = f"1.2.826.0.1.3680043.10.4242.{index}"
    return InstanceStored(
        study_uid=uid, hospital_id="HGE", correlation_id=f"c-{index}", accession_number=f"R{index:04d}",
        producer=producer("ingest"), sop_instance_uid=f"{uid}.1", series_instance_uid=f"{uid}.0",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", modality="MG",
        object_key=f"HGE/{uid}/1.dcm", size_bytes=10, sha256="0" * 64, patient_key="p",
    )


async def publish(bootstrap: str, prefix: str) -> set[int]:
    """Publish one ``instance.stored`` per study; the partitions they went to."""
    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await kafka.start()
    try:
        partitions = set()
        for index in range(STUDIES):
            event = stored(index)
            sent = await kafka.send_and_wait(topic_for(type(event), prefix), event.model_dump_json().encode(),
                                             key=event.study_uid.encode())
            partitions.add(sent.partition)
        return partitions
    finally:
        await kafka.stop()


async def projection_members(bootstrap: str, group: str) -> int:
    """Members of the projection's consumer group that hold partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [described] = response.to_object()["groups"]
        return sum(1 for member in described["members"] if member["member_assignment"])
    finally:
        await admin.close()


def ready(base: str) -> bool:
    try:
        return bool(httpx.get(f"{base}/healthz", timeout=2).json()["ready"])
    except httpx.HTTPError:
        return False


class Stream:
    """One open ``GET /events`` stream: its replica and the studies it has been told about."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=90)
        self.context = self.client.stream("GET", "/events")
        self.lines = self.context.__enter__().iter_lines()
        self.replica = ""
        self.studies: set[str] = set()
        event = ""
        for line in self.lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "ready":
                self.replica = json.loads(line.split(":", 1)[1])["replica"]
                return

    def read_until(self, expected: set[str], deadline: float) -> None:
        event = ""
        for line in self.lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "study":
                self.studies.add(json.loads(line.split(":", 1)[1])["study_uid"])
            if expected <= self.studies or time.monotonic() > deadline:
                return

    def close(self) -> None:
        self.context.__exit__(None, None, None)
        self.client.close()


def test_two_replicas_on_one_port_split_the_work_and_every_stream_sees_every_change(
    kafka, postgres_url: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    prefix = f"rep{uuid.uuid4().hex[:8]}."
    port = free_port()
    env = {
        "MDD_TRANSPORT": "kafka", "MDD_KAFKA_BOOTSTRAP": kafka.bootstrap, "MDD_TOPIC_PREFIX": prefix,
        "MDD_CONSUMER_GROUP_PREFIX": prefix.rstrip("."), "MDD_DATABASE_URL": postgres_url, "MDD_STORE_BACKEND": "local",
        "MDD_API_PORT": str(port), "MDD_API_REUSE_PORT": "true", "MDD_BOOTSTRAP_API_KEY": API_KEY,
        "MDD_AUTH_JWT_SECRET": "one-secret-for-every-replica-0123456789",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # Streams are opened and closed in a loop until one lands on each replica: more than the default cap per key.
        "MDD_API_MAX_STREAMS_PER_PRINCIPAL": "50",
    }
    (tmp_path / "metrics").mkdir()
    base = f"http://127.0.0.1:{port}"
    logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
    with mdd_process(["serve", "status_api"], {**env, "MDD_DATA_DIR": str(tmp_path / "a")}, logs[0]) as first:
        wait_for(lambda: ready(base), 90, "replica A", [(first, logs[0])])
        with mdd_process(["serve", "status_api"], {**env, "MDD_DATA_DIR": str(tmp_path / "b")}, logs[1]) as second:
            processes = [(first, logs[0]), (second, logs[1])]
            wait_for(lambda: "services ready" in logs[1].read_text(errors="replace"), 90, "replica B", processes)
            group = f"{prefix.rstrip('.')}.status_api.projection"
            wait_for(lambda: asyncio.run(projection_members(kafka.bootstrap, group)) == 2, 90,
                     "both replicas holding projection partitions", processes)

            # Streams land on either replica (the kernel spreads connections); keep one on each.
            streams: dict[str, Stream] = {}
            for _ in range(40):
                stream = Stream(base)
                if stream.replica in streams:
                    stream.close()
                else:
                    streams[stream.replica] = stream
                if len(streams) == 2:
                    break
            assert len(streams) == 2, "every connection went to the same replica"

            partitions = asyncio.run(publish(kafka.bootstrap, prefix))
            assert len(partitions) > 1  # so that both replicas project part of the studies
            expected = {stored(index).study_uid for index in range(STUDIES)}
            deadline = time.monotonic() + 60
            for stream in streams.values():
                stream.read_until(expected, deadline)
            for replica, stream in streams.items():
                assert stream.studies == expected, f"replica {replica[:8]} missed {sorted(expected - stream.studies)}"
                stream.close()

            for _ in range(LIST_CALLS):  # new connections each time: the kernel spreads them over both replicas
                page = httpx.get(f"{base}/studies", params={"limit": 100}, headers={"Authorization": f"Bearer {API_KEY}"}).json()
                assert {item["study_uid"] for item in page["items"]} == expected
            # Whichever replica answers the scrape, the counts are both replicas' together.
            for _ in range(4):
                assert f'mdd_api_requests_total{{method="GET",route="/studies",status="200"}} {LIST_CALLS:.1f}' in \
                    httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
                applied = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
                assert f'mdd_status_events_applied_total{{event_type="instance.stored"}} {STUDIES:.1f}' in applied


async def test_changes_made_while_the_listener_was_cut_off_reach_the_streams_once_it_is_back(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    init_db(engine, [StudyRow, StudyEventRow, NotificationRow])
    listener = ChangeListener(engine, retry_seconds=3.0)
    stream = BROADCASTER.subscribe(Principal(name="tablero", kind="apikey", role="admin"))
    listener.start()
    try:
        await asyncio.to_thread(listener.listening.wait, 30)
        with engine.connect() as connection:  # as a PostgreSQL restart or a network cut would
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))
        for _ in range(100):
            if not listener.listening.is_set():
                break
            await asyncio.sleep(0.1)
        assert not listener.listening.is_set()

        # Another replica changes a study while nobody listens here: its notice is lost.
        uid = "1.2.826.0.1.3680043.10.4243.1"
        with Session(engine) as session:
            session.add(StudyRow(study_uid=uid, hospital_id="HGE", accession_number="R1", created_at=utc_now(), updated_at=utc_now()))
            session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": f"otra-replica HGE/{uid}"})
            session.commit()

        summary = await asyncio.wait_for(stream.queue.get(), 20)
        assert isinstance(summary, StudySummary) and summary.study_uid == uid and summary.hospital_id == "HGE"

        # Listening again: another hospital reuses the UID, and a notice of its study names that study
        # only. A third hospital's notice follows it: notices are handled in order, so once that one's
        # summary is here, everything the first notice fanned out is here too.
        with Session(engine) as session:
            session.add(StudyRow(study_uid=uid, hospital_id="HOSP-B", accession_number="B1", created_at=utc_now(), updated_at=utc_now()))
            session.add(StudyRow(study_uid="1.2.826.0.1.3680043.10.4243.2", hospital_id="HOSP-C", accession_number="C1",
                                 created_at=utc_now(), updated_at=utc_now()))
            session.commit()
        with engine.begin() as connection:
            for payload in (f"otra-replica HOSP-B/{uid}", "otra-replica HOSP-C/1.2.826.0.1.3680043.10.4243.2"):
                connection.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
        seen: list[tuple[str, str]] = []
        while not seen or seen[-1][0] != "HOSP-C":
            fanned = await asyncio.wait_for(stream.queue.get(), 20)
            assert isinstance(fanned, StudySummary)
            seen.append((fanned.hospital_id, fanned.accession_number))
        assert seen == [("HOSP-B", "B1"), ("HOSP-C", "C1")]
    finally:
        listener.stop()
        BROADCASTER.unsubscribe(stream)
        engine.dispose()
