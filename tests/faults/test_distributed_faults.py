"""The distributed system under faults as they happen, on real Kafka, MinIO, PostgreSQL (fsync on),
Orthanc as the results PACS and an SMTP server:

- each of the five services killed -9 with studies in flight, and started again;
- MinIO and Kafka stopped for 30 s, PostgreSQL killed -9 and started again, the SMTP server and the
  PACS down for 30 s;
- two replicas each of ingest, preprocess, infer and notify, one of each killed while the consumer
  groups rebalance (a replica joining).

After each, the operator's checks: every acknowledged instance in MinIO byte for byte, every study
with both lights, each e-mail once per rule and recipient, the SR and the mosaic once per study at
Orthanc, no failed study, no dead letter (table and topic), every consumer group caught up.
The module has its own servers: stopping them must not disturb the rest of the suite.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from minio import Minio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from infra.servers import (
    KafkaInfo, OrthancInfo, PostgresInfo, S3Info, ServerControl, kafka_server, minio_server, orthanc_server, postgres_server,
)
from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import API_KEY, distributed_env
from tests.faults.harness import (
    RULES, Modality, RestartableSmtp, Sending, ServiceProcess, all_notified, check_everything, dlq_count, kafka_lag, kafka_quiet, settled,
    study_rows, unsettled, wait_for,
)

SERVICES = ("status_api", "ingest", "preprocess", "infer", "notify")
PIPELINE_TIMEOUT_S = 480.0
OUTAGE_S = 30.0


@dataclass
class Servers:
    """This module's own servers and the handles that take them down."""

    kafka: KafkaInfo
    minio: S3Info
    postgres: PostgresInfo
    orthanc: OrthancInfo
    controls: dict[str, ServerControl]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    controls = {name: ServerControl() for name in ("kafka", "minio", "postgres", "orthanc")}
    with kafka_server(control=controls["kafka"]) as kafka, minio_server(control=controls["minio"]) as minio, \
            postgres_server(control=controls["postgres"]) as postgres, orthanc_server(control=controls["orthanc"]) as orthanc:
        yield Servers(kafka, minio, postgres, orthanc, controls)


@dataclass
class Deployment:
    """One distributed deployment on the module's servers, isolated by topic, bucket and database names."""

    servers: Servers
    root: Path
    smtp: RestartableSmtp
    replicas: dict[str, int] = field(default_factory=lambda: {name: 1 for name in SERVICES})
    processes: dict[str, list[ServiceProcess]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sink = self.smtp.sink
        self.prefix = f"f{uuid.uuid4().hex[:8]}."
        self.bucket = self.prefix.rstrip(".")
        database = f"faults_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.servers.postgres.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        self.database_url = self.servers.postgres.url.rsplit("/", 1)[0] + f"/{database}"
        self.engine: Engine = create_engine(self.database_url, pool_pre_ping=True)
        self.dicom_port, self.api_port = free_port(), free_port()
        self.ingest_ports: list[int] = []
        rules = self.root / "rules.toml"
        rules.write_text(RULES, encoding="utf-8")
        self.env = distributed_env(self.servers.kafka, self.servers.minio, self.database_url, self.prefix, self.root / "var",
                                   self.dicom_port) | {
            "MDD_CONSUMER_GROUP_PREFIX": self.bucket, "MDD_API_PORT": str(self.api_port), "MDD_BOOTSTRAP_API_KEY": API_KEY,
            "MDD_STUDY_QUIET_SECONDS": "3", "MDD_SMTP_PORT": str(self.sink.port), "MDD_NOTIFY_RULES_FILE": str(rules),
            "MDD_NOTIFY_SENDING_LEASE_SECONDS": "8", "MDD_DEPENDENCY_RETRY_MAX_SECONDS": "2", "MDD_PUBLISH_TIMEOUT_SECONDS": "5",
            "MDD_RESULTS_PACS_HOST": "127.0.0.1", "MDD_RESULTS_PACS_PORT": str(self.servers.orthanc.dicom_port),
            "MDD_RESULTS_PACS_AE_TITLE": self.servers.orthanc.ae_title, "MDD_LOG_JSON": "true",
            "MDD_INFER_BATCH_SIZE": "4", "MDD_KAFKA_PARTITIONS": "4",
        }
        self.modality = Modality(self.dicom_port)

    def _process(self, name: str, index: int) -> ServiceProcess:
        env = dict(self.env)
        if name == "ingest":
            # Replicas of ingest each listen on their own DICOM and HTTP ports (a load balancer would front them).
            env["MDD_DICOM_PORT"] = str(self.dicom_port if index == 0 else free_port())
            env["MDD_INGEST_HTTP_PORT"] = str(free_port())
            self.ingest_ports.append(int(env["MDD_DICOM_PORT"]))
        return ServiceProcess(["serve", name], env, self.root / f"{name}-{index}.log")

    def start(self) -> None:
        for name in SERVICES:
            self.processes[name] = [self._process(name, i) for i in range(self.replicas[name])]
            for process in self.processes[name]:
                process.start()
        wait_for(self.ready, 180, "the deployment", self.tails)

    def ready(self) -> bool:
        try:
            health = httpx.get(f"http://127.0.0.1:{self.api_port}/healthz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(health.get("ready"))

    def kill(self, name: str, index: int = 0) -> None:
        """``kill -9`` one process of a service and start it again at once (its supervisor's job)."""
        process = self.processes[name][index]
        process.kill()
        process.start()

    def add_replica(self, name: str) -> ServiceProcess:
        process = self._process(name, len(self.processes[name]))
        self.processes[name].append(process)
        process.start()
        return process

    def tails(self) -> str:
        return "\n".join(p.tail(1500) for group in self.processes.values() for p in group)

    def read_object(self, key: str) -> bytes:
        client = Minio(self.servers.minio.endpoint, access_key=self.servers.minio.access_key,
                       secret_key=self.servers.minio.secret_key, secure=False)
        response = client.get_object(f"{self.bucket}-dicom", key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def caught_up(self, studies: list[SyntheticStudy]) -> bool:
        return all_notified(self.engine, studies) and settled(self.engine) and kafka_quiet(self.servers.kafka.bootstrap, self.bucket)

    def report(self, studies: list[SyntheticStudy]) -> Callable[[], str]:
        def describe() -> str:
            rows = study_rows(self.engine, [s.study_uid for s in studies])
            lag = asyncio.run(kafka_lag(self.servers.kafka.bootstrap, self.bucket))
            return f"states: {Counter(r['state'] for r in rows.values())} of {len(studies)}\nunsettled: {unsettled(self.engine)}\n" \
                   f"consumer lag: {lag}\n{self.tails()}"

        return describe

    def check(self, studies: list[SyntheticStudy]) -> None:
        check_everything(self.engine, studies, self.modality, self.read_object, self.sink,
                         lambda: dlq_count(self.servers.kafka.bootstrap, f"{self.prefix}dlq"),
                         orthanc_url=self.servers.orthanc.http_url)

    def stop(self) -> None:
        for group in self.processes.values():
            for process in group:
                process.stop()
        self.engine.dispose()


@pytest.fixture
def deployment(servers: Servers, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    smtp = RestartableSmtp(free_port())
    made: list[Deployment] = []

    def make(**replicas: int) -> Deployment:
        found = Deployment(servers, tmp_path, smtp, {name: replicas.get(name, 1) for name in SERVICES})
        made.append(found)
        found.start()
        return found

    try:
        yield make
    finally:
        for found in made:
            found.stop()
        smtp.stop()


def studies(seed: int, count: int) -> list[SyntheticStudy]:
    return [make_study(seed=seed + i, finding="mass" if i % 3 == 0 else None, rows=256, cols=208) for i in range(count)]


def in_flight(system: Deployment, sent: list[SyntheticStudy]) -> int:
    """Studies sent (or being sent) that have not reached their people yet."""
    rows = study_rows(system.engine, [s.study_uid for s in sent])
    return sum(1 for s in sent if rows.get(s.study_uid, {}).get("state") != "notified")


def progress(system: Deployment, sent: list[SyntheticStudy], state: str) -> int:
    order = ["receiving", "completed", "preprocessed", "ready", "notified"]
    rows = study_rows(system.engine, [s.study_uid for s in sent])
    return sum(1 for row in rows.values() if row["state"] in order[order.index(state):])


def test_each_service_killed_with_studies_in_flight_loses_nothing_and_doubles_nothing(
    deployment: Callable[..., Deployment],
) -> None:
    system = deployment()
    sent = studies(700, 34)
    sending = system.modality.in_background(sent, associations=4)
    # Each service dies while at least 30 studies are on their way; the others carry on meanwhile.
    for name, stage in (("ingest", "receiving"), ("preprocess", "completed"), ("infer", "preprocessed"),
                        ("notify", "ready"), ("status_api", "ready")):
        wait_for(lambda stage=stage: progress(system, sent, stage) >= 1, PIPELINE_TIMEOUT_S, f"a study past {stage}",
                 system.report(sent))
        assert in_flight(system, sent) >= 30
        system.kill(name)
    wait_for(lambda: sending.done() and system.caught_up(sent), PIPELINE_TIMEOUT_S, "every study notified", system.report(sent))
    system.check(sent)


def test_outages_of_every_dependency_are_waited_out(deployment: Callable[..., Deployment], servers: Servers) -> None:
    system = deployment()
    everything: list[SyntheticStudy] = []

    def outage(
        stop: Callable[[], None], start: Callable[[], None], seed: int, during: Callable[[], None] = lambda: None,
        seconds: float = OUTAGE_S,
    ) -> None:
        batch = studies(seed, 6)
        everything.extend(batch)
        sending = system.modality.in_background(batch, associations=2)
        # The dependency goes down with studies on their way through the pipeline.
        wait_for(lambda: progress(system, batch, "completed") >= 1, PIPELINE_TIMEOUT_S, "studies under way", system.report(batch))
        stop()
        started = time.monotonic()
        during()
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))  # the outage itself lasts this long
        start()
        wait_for(sending.done, PIPELINE_TIMEOUT_S, "the batch acknowledged after the outage", system.report(batch))

    controls = servers.controls
    late_sending: list[Sending] = []

    def store_down_is_reported() -> None:
        late = studies(806, 1)  # a modality sending while the store is down is told to retry, and /healthz says why
        everything.extend(late)
        late_sending.append(system.modality.in_background(late, associations=1))
        health = wait_for(lambda: (h := ingest_health(system)) and any(d["dependency"] == "store" for d in h["dependencies"]) and h,
                          60, "ingest's /healthz to name the store")
        assert health["status"] == "degraded"

    outage(lambda: controls["minio"].stop(9), controls["minio"].start, 800, store_down_is_reported)
    outage(lambda: controls["kafka"].stop(9), controls["kafka"].start, 810)

    def database_down_is_reported() -> None:
        health = wait_for(lambda: (h := api_health(system)) and h["status"] == "degraded" and h, 60, "the API's /healthz")
        assert "database" in {d["dependency"] for d in health["dependencies"]}

    outage(lambda: controls["postgres"].stop(9), controls["postgres"].start, 820, database_down_is_reported, seconds=10)

    def both_down() -> None:
        system.smtp.stop()
        controls["orthanc"].stop(9)

    def both_up() -> None:
        system.smtp.start()
        controls["orthanc"].start()

    outage(both_down, both_up, 830)
    wait_for(lambda: all(s.done() for s in late_sending) and system.caught_up(everything), PIPELINE_TIMEOUT_S,
             "every study notified", system.report(everything))
    system.check(everything)
    assert api_health(system)["status"] == "ok"


def test_two_replicas_of_each_service_one_killed_during_a_rebalance(deployment: Callable[..., Deployment]) -> None:
    system = deployment(ingest=2, preprocess=2, infer=2, notify=2)
    sent = studies(900, 30)
    half = len(sent) // 2
    first = system.modality.in_background(sent[:half], associations=2)
    # The second ingest replica takes half of the modalities.
    second = Modality(system.ingest_ports[1], acknowledged=system.modality.acknowledged)
    other = second.in_background(sent[half:], associations=2)
    wait_for(lambda: progress(system, sent, "completed") >= 3, PIPELINE_TIMEOUT_S, "studies under way", system.report(sent))
    for name in ("preprocess", "infer", "notify"):
        system.add_replica(name)  # a third member joins: the group rebalances...
        system.processes[name][0].kill()  # ...and one of the first two dies in the middle of it
    system.processes["ingest"][1].kill()
    system.processes["ingest"][1].start()
    wait_for(lambda: first.done() and other.done() and system.caught_up(sent), PIPELINE_TIMEOUT_S, "every study notified",
             system.report(sent))
    system.check(sent)


def api_health(system: Deployment) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{system.api_port}/healthz", timeout=5).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None


def ingest_health(system: Deployment) -> dict | None:
    port = system.processes["ingest"][0].env["MDD_INGEST_HTTP_PORT"]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None
