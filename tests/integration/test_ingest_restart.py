"""Study assembly survives a killed ingest process: `study.completed` exactly once."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import distributed_env, echoscu_ok, mdd_process, storescu, wait_for

QUIET_SECONDS = 4


async def _event_types(bootstrap: str, topic_prefix: str, study_uid: str) -> Counter[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"check-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.subscribe([f"{topic_prefix}instance.stored", f"{topic_prefix}study.completed"])
        counts: Counter[str] = Counter()
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["study_uid"] == study_uid:
                        counts[event["event_type"]] += 1
        return counts
    finally:
        await consumer.stop()


def _env(kafka, minio, postgres_url: str, prefix: str, dicom_port: int, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return distributed_env(kafka, minio, postgres_url, prefix, tmp_path / "var", dicom_port) | {
        "MDD_STUDY_QUIET_SECONDS": str(QUIET_SECONDS)
    }


def _two_folders(study: SyntheticStudy, tmp_path: Path) -> tuple[Path, Path]:
    everything = tmp_path / "all"
    study.save(everything)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for index, path in enumerate(sorted(everything.iterdir())):
        shutil.copy(path, (first if index < 2 else second) / path.name)
    return first, second


def test_killed_ingest_completes_the_study_exactly_once_after_restart(kafka, minio, postgres_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study = make_study(seed=4242)
    first, second = _two_folders(study, tmp_path)
    prefix = f"restart{uuid.uuid4().hex[:6]}."
    dicom_port = free_port()
    env = _env(kafka, minio, postgres_url, prefix, dicom_port, tmp_path)

    with mdd_process(["serve", "ingest"], env, tmp_path / "ingest-1.log") as process:
        wait_for(lambda: echoscu_ok(dicom_port), 90, "ingest", [(process, tmp_path / "ingest-1.log")])
        assert storescu(first, dicom_port).count("(Success)") == 2
        process.send_signal(signal.SIGKILL)  # no clean shutdown
        process.wait()

    with mdd_process(["serve", "ingest"], env, tmp_path / "ingest-2.log") as process:
        wait_for(lambda: echoscu_ok(dicom_port), 90, "ingest after restart", [(process, tmp_path / "ingest-2.log")])
        assert storescu(second, dicom_port).count("(Success)") == 2
        assert storescu(first, dicom_port).count("(Success)") == 2  # the modality resends: acknowledged, not duplicated
        counts = wait_for(
            lambda: (c := asyncio.run(_event_types(kafka.bootstrap, prefix, study.study_uid)))["study.completed"] and c,
            60,
            "study.completed",
            [(process, tmp_path / "ingest-2.log")],
        )
    assert counts == Counter({"instance.stored": 4, "study.completed": 1})


def test_a_study_left_open_by_a_crash_completes_once_by_the_quiet_period(kafka, minio, postgres_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study = make_study(seed=4343)
    first, _ = _two_folders(study, tmp_path)
    prefix = f"quiet{uuid.uuid4().hex[:6]}."
    dicom_port = free_port()
    env = _env(kafka, minio, postgres_url, prefix, dicom_port, tmp_path)

    with mdd_process(["serve", "ingest"], env, tmp_path / "ingest-1.log") as process:
        wait_for(lambda: echoscu_ok(dicom_port), 90, "ingest", [(process, tmp_path / "ingest-1.log")])
        assert storescu(first, dicom_port).count("(Success)") == 2
        process.send_signal(signal.SIGKILL)
        process.wait()

    with mdd_process(["serve", "ingest"], env, tmp_path / "ingest-2.log") as process:
        counts = wait_for(
            lambda: (c := asyncio.run(_event_types(kafka.bootstrap, prefix, study.study_uid)))["study.completed"] and c,
            60,
            "study.completed after the quiet period",
            [(process, tmp_path / "ingest-2.log")],
        )
        # A few more quiet periods: still exactly one completion.
        time.sleep(QUIET_SECONDS * 2)
        counts = asyncio.run(_event_types(kafka.bootstrap, prefix, study.study_uid))
    assert counts == Counter({"instance.stored": 2, "study.completed": 1})
