"""``mdd up`` (the embedded system) killed -9: at every commit, publish and send boundary, and at any moment.

Crash points are armed through ``MDD_TEST_CRASH_AT`` (only tests set it); each fires once, the process
is started again as an operator's supervisor would, and the modality sends again whatever it was not
told is stored. At the end every acknowledged instance is in the store byte for byte, every study
has both lights, each e-mail reached its recipient once (one Message-ID), the results reached the
PACS once, and nothing failed or was dead-lettered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from shared.db import make_engine
from shared.reliability.crashpoints import CRASH_AT_VARIABLE, CRASH_ONCE_VARIABLE
from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import SmtpSink, smtp_sink
from tests.faults.harness import (
    RULES, Modality, ServiceProcess, all_notified, check_everything, scalar, settled, study_rows, wait_for,
)

#: Every boundary a crash can fall on, in the order a study meets them.
CRASH_POINTS = (
    "ingest.stored",  # the object is in the store, nothing recorded yet
    "ingest.recorded",  # recorded with its events in the outbox, not yet published
    "outbox.published",  # published, not yet marked published
    "ingest.completed",  # a study completed by its quiet period, study.completed not yet published
    "bus.handled",  # a handler finished, its results not yet kept
    "bus.recorded",  # its results kept, not yet published
    "bus.delivered",  # published, the message not yet acknowledged
    "notify.claimed",  # a message claimed, not yet sent
    "notify.sent",  # sent (the SMTP server took it), not yet recorded
)
PIPELINE_TIMEOUT_S = 420.0


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink(free_port()) as server:
        yield server


def embedded(tmp_path: Path, sink: SmtpSink, orthanc) -> tuple[ServiceProcess, Engine, Modality]:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    dicom_port = free_port()
    env = {
        "MDD_DATA_DIR": str(tmp_path / "var"), "MDD_DICOM_PORT": str(dicom_port), "MDD_API_PORT": str(free_port()),
        "MDD_INGEST_HTTP_PORT": str(free_port()), "MDD_SMTP_PORT": str(sink.port), "MDD_NOTIFY_RULES_FILE": str(rules),
        "MDD_STUDY_QUIET_SECONDS": "3", "MDD_NOTIFY_SENDING_LEASE_SECONDS": "3", "MDD_DEPENDENCY_RETRY_MAX_SECONDS": "1",
        "MDD_PUBLISH_TIMEOUT_SECONDS": "5", "MDD_RESULTS_PACS_HOST": "127.0.0.1",
        "MDD_RESULTS_PACS_PORT": str(orthanc.dicom_port), "MDD_RESULTS_PACS_AE_TITLE": orthanc.ae_title,
        "MDD_BOOTSTRAP_API_KEY": "fault-tests-admin-key-0001", "MDD_LOG_JSON": "true",
    }
    system = ServiceProcess(["up"], env, tmp_path / "mdd-up.log")
    return system, make_engine(f"sqlite:///{tmp_path / 'var' / 'mdd.db'}"), Modality(dicom_port)


def studies_for(seed: int, count: int) -> list[SyntheticStudy]:
    """Studies with and without a suspicious finding, and one of three views that completes by its quiet period."""
    studies = [make_study(seed=seed + i, finding="mass" if i % 2 else None, rows=256, cols=208) for i in range(count)]
    studies[-1] = dataclasses.replace(studies[-1], views=studies[-1].views[:3])
    return studies


def instances_recorded(engine: Engine, tmp_path: Path) -> int:
    """Instances ingest has recorded; 0 while ``mdd up`` is still making its database (the file appears
    before its tables do, and a slow first start leaves time to read in between)."""
    if not (tmp_path / "var" / "mdd.db").exists() or not inspect(engine).has_table("ingest_instance"):
        return 0
    return int(scalar(engine, "SELECT count(*) FROM ingest_instance"))


def local_object(tmp_path: Path) -> object:
    return lambda key: (tmp_path / "var" / "store" / "dicom" / key).read_bytes()


def test_a_crash_at_every_boundary_loses_nothing_and_doubles_nothing(
    tmp_path: Path, sink: SmtpSink, orthanc  # type: ignore[no-untyped-def]
) -> None:
    system, engine, modality = embedded(tmp_path, sink, orthanc)
    once = tmp_path / "crashed"
    once.mkdir()
    armed = {CRASH_AT_VARIABLE: ",".join(CRASH_POINTS), CRASH_ONCE_VARIABLE: str(once)}
    studies = studies_for(500, 5)
    system.start(armed)
    sender = modality.in_background(studies, 2)
    crashes = 0

    def fired() -> set[str]:
        return {path.name.removesuffix(".crashed") for path in once.iterdir()}

    def progressed() -> bool:
        nonlocal crashes
        if not system.alive:  # a crash point fired: start it again, as a supervisor does
            assert system.process is not None and system.process.returncode == -9, system.tail()
            crashes += 1
            system.start(armed)
            return False
        # A point may fire late (a relay or a sweep after the board looked settled): the run is over
        # only when every point has fired and the process that came back after the last one is alive.
        everything = sender.done() and all_notified(engine, studies) and settled(engine)
        return everything and fired() == set(CRASH_POINTS) and system.alive

    try:
        wait_for(progressed, PIPELINE_TIMEOUT_S, "every study notified after a crash at every point",
                 lambda: f"never reached: {set(CRASH_POINTS) - fired()}\n"
                         f"{study_rows(engine, [s.study_uid for s in studies])}\n{system.tail()}")
        assert crashes == len(CRASH_POINTS)
        check_everything(engine, studies, modality, local_object(tmp_path), sink,
                         dead_letters_on_topic=lambda: 0, orthanc_url=orthanc.http_url)  # type: ignore[arg-type]
    finally:
        system.stop()
        engine.dispose()


def test_mdd_up_killed_at_any_moment_with_studies_in_flight_loses_nothing(
    tmp_path: Path, sink: SmtpSink, orthanc  # type: ignore[no-untyped-def]
) -> None:
    system, engine, modality = embedded(tmp_path, sink, orthanc)
    studies = studies_for(600, 8)
    system.start()
    sender = modality.in_background(studies, 4)
    try:
        # Killed while instances arrive, and again while results are being computed and sent.
        wait_for(lambda: instances_recorded(engine, tmp_path) >= 6, 120, "instances arriving", system.tail)
        system.kill()
        system.start()
        wait_for(lambda: sum(r["state"] in ("ready", "notified") for r in study_rows(engine, [s.study_uid for s in studies]).values()) >= 2,
                 PIPELINE_TIMEOUT_S, "the first results", system.tail)
        system.kill()
        system.start()
        wait_for(lambda: sender.done() and all_notified(engine, studies) and settled(engine), PIPELINE_TIMEOUT_S,
                 "every study notified", lambda: f"{study_rows(engine, [s.study_uid for s in studies])}\n{system.tail()}")
        check_everything(engine, studies, modality, local_object(tmp_path), sink,
                         dead_letters_on_topic=lambda: 0, orthanc_url=orthanc.http_url)  # type: ignore[arg-type]
    finally:
        system.stop()
        engine.dispose()
