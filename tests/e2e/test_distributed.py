"""End to end in the distributed mode: five ``mdd serve`` processes on Kafka, MinIO and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from minio import Minio

from shared.synth import SyntheticStudy
from tests.conftest import free_port
from tests.e2e.harness import API_KEY, distributed_env, mdd_process, smtp_sink
from tests.e2e.scenario import RADIOLOGIST, SECOND_HOSPITAL_SENDERS, run_pipeline_scenario, run_second_hospital_scenario

SERVICES = ("status_api", "ingest", "preprocess", "infer", "notify")
QUIET_SECONDS = 3


async def _events_on_kafka(bootstrap: str, prefix: str, study_uid: str) -> list[tuple[str, dict]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"e2e-check-{uuid.uuid4()}", auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix)]
        consumer.subscribe(topics)
        found: list[tuple[str, dict]] = []
        idle_rounds = 0
        while idle_rounds < 3:
            batch = await consumer.getmany(timeout_ms=2000)
            idle_rounds = 0 if batch else idle_rounds + 1
            for partition, records in batch.items():
                for record in records:
                    if record.key == study_uid.encode():
                        found.append((partition.topic, json.loads(record.value)))
        return found
    finally:
        await consumer.stop()


def least_privilege(env: dict[str, str], minio, postgres_url: str) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """What compose's provision does: migrations as the owner, then each service's own MinIO user and
    PostgreSQL role; the environment each service then runs with."""
    from infra.provision.access import database_role, minio_user
    from infra.provision.database import provision_database
    from infra.provision.object_store import provision_minio
    from shared.db import make_engine, upgrade_db
    from shared.settings import Settings

    settings = Settings(store_backend="minio", minio_endpoint=minio.endpoint, bucket_dicom=env["MDD_BUCKET_DICOM"],
                        bucket_derived=env["MDD_BUCKET_DERIVED"], bucket_results=env["MDD_BUCKET_RESULTS"])
    keys = {name: uuid.uuid4().hex for name in SERVICES}
    provision_minio(settings, minio.access_key, minio.secret_key, keys)
    owner = make_engine(postgres_url)
    upgrade_db(owner)
    provision_database(owner, {name: uuid.uuid4().hex for name in SERVICES})  # the test server trusts loopback logins
    owner.dispose()
    scheme, rest = postgres_url.split("://", 1)
    return {
        name: env | {
            "MDD_MINIO_ACCESS_KEY": minio_user(name), "MDD_MINIO_SECRET_KEY": keys[name],
            "MDD_DATABASE_URL": f"{scheme}://{database_role(name)}@{rest.split('@', 1)[1]}",
        }
        for name in SERVICES
    }


def test_distributed_pipeline_on_kafka_minio_and_postgres(
    tmp_path: Path, study_folder: Path, four_view_study: SyntheticStudy, kafka, minio, postgres_url: str  # type: ignore[no-untyped-def]
) -> None:
    api_port, dicom_port, smtp_port = free_port(), free_port(), free_port()
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    buckets = {kind: f"{prefix.rstrip('.')}-{kind}" for kind in ("dicom", "derived", "results")}
    env = distributed_env(kafka, minio, postgres_url, prefix, tmp_path / "var", dicom_port) | {
        "MDD_API_PORT": str(api_port),
        "MDD_BOOTSTRAP_API_KEY": API_KEY,
        "MDD_STUDY_QUIET_SECONDS": str(QUIET_SECONDS),
        "MDD_SMTP_PORT": str(smtp_port),
        "MDD_NOTIFY_EMAILS": f'["{RADIOLOGIST}"]',
        "MDD_SENDERS": SECOND_HOSPITAL_SENDERS,
    }
    # Each service with its own MinIO user and database role, as compose runs them: the pipeline below
    # shows those grants are enough.
    envs = least_privilege(env, minio, postgres_url)
    with ExitStack() as stack:
        sink = stack.enter_context(smtp_sink(smtp_port))
        processes = []
        for name in SERVICES:
            log = tmp_path / f"{name}.log"
            processes.append((stack.enter_context(mdd_process(["serve", name], envs[name], log)), log))
        final = run_pipeline_scenario(
            api=f"http://127.0.0.1:{api_port}",
            dicom_port=dicom_port,
            study=four_view_study,
            folder=study_folder,
            sink=sink,
            processes=processes,
            quiet_seconds=QUIET_SECONDS,
        )
        # Another hospital sends the same files: its own study, its own lights, the first one untouched.
        second = run_second_hospital_scenario(
            api=f"http://127.0.0.1:{api_port}", dicom_port=dicom_port, study=four_view_study, folder=study_folder,
            sink=sink, processes=processes, first=final,
        )

    # Raw and derived objects are in MinIO, each hospital's under its own folder.
    client = Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key, secure=False)
    for hospital in (final["hospital_id"], second["hospital_id"]):
        folder = f"{hospital}/{four_view_study.study_uid}/"
        raw = [o.object_name for o in client.list_objects(buckets["dicom"], prefix=folder, recursive=True)]
        assert len(raw) == 4
        derived = {o.object_name.rsplit("/", 1)[-1] for o in client.list_objects(buckets["derived"], prefix=folder, recursive=True)}
        assert derived == {"mask.png", "crop.png", "magma.png", "input.npy"}
    assert len(list(client.list_objects(buckets["dicom"], recursive=True))) == 8
    assert len(final["derived_views"]) == 4

    # Every event of the study is on its own Kafka topic, keyed by the study UID.
    keyed = asyncio.run(_events_on_kafka(kafka.bootstrap, prefix, four_view_study.study_uid))
    on_kafka = [(topic, event) for topic, event in keyed if event["hospital_id"] == final["hospital_id"]]
    assert {event["event_id"] for _, event in keyed if event["hospital_id"] == second["hospital_id"]} == {
        event["event_id"] for event in second["events"]}
    by_topic = Counter(topic for topic, _ in on_kafka)
    assert by_topic[f"{prefix}instance.stored"] == 4
    assert by_topic[f"{prefix}study.completed"] == 1
    assert by_topic[f"{prefix}study.preprocessed"] == 1
    assert by_topic[f"{prefix}study.inferred"] == 1
    assert by_topic[f"{prefix}notification.sent"] == 1
    assert all(topic == f"{prefix}{event['event_type']}" for topic, event in on_kafka)
    api_ids = {event["event_id"] for event in final["events"]}
    assert {event["event_id"] for _, event in on_kafka} == api_ids
