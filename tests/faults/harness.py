"""What the fault tests need: service processes to kill -9, a modality that retries, and the checks an
operator makes afterwards — every acknowledged instance intact, every study with both lights, each
e-mail once per rule and recipient, the results at the PACS once, nothing failed, nothing dead-lettered.

Waits poll a condition (row states, consumer lag, what the peers received); none sleeps in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from minio import Minio
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from infra.servers import (
    KafkaInfo, OrthancInfo, PostgresInfo, S3Info, ServerControl, kafka_server, minio_server, orthanc_server, postgres_server,
)
from services.notify.pacs_results import KINDS as RESULT_KINDS
from shared.synth import SyntheticStudy, make_study
from tests.conftest import free_port
from tests.e2e.harness import API_KEY, SmtpSink, body_text, distributed_env
from tests.integration.test_scp_minio import data_set

T = TypeVar("T")
RADIOLOGY = "radiologia@hge.example.mx"
DOCTOR = "medico@hge.example.mx"
#: Every result to the ordering doctor, RED results also to radiology (the rules the fault tests use).
RULES = f"""
[hospitals."*".recipients]
radio = {{ name = "Radiología", channels = ["{RADIOLOGY}"] }}
doctor = {{ name = "Médico", channels = ["{DOCTOR}"] }}
[[hospitals."*".rules]]
id = "result_ready"
event = "study.inferred"
recipients = ["doctor"]
[[hospitals."*".rules]]
id = "triage_red"
event = "study.inferred"
lights = ["RED"]
recipients = ["radio"]
"""


class RestartableSmtp:
    """A real SMTP server (aiosmtpd) that can go down and come back on the same port, keeping what it got."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.sink = SmtpSink(port)
        self._make = lambda: Controller(self.sink, hostname="127.0.0.1", port=port)
        self._controller = self._make()
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def start(self) -> None:
        self._controller = self._make()
        self._controller.start()


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, on_timeout: Callable[[], str] = lambda: "") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``on_timeout()``'s report otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(0.25)


class ServiceProcess:
    """One ``mdd`` process (a service, or the whole embedded system) that can be killed and started again."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        """Start it (again): same command, same settings."""
        assert self.process is None or self.process.poll() is not None, f"{self.args} is running"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        handle.write(f"\n===== start {self.starts + 1} =====\n".encode())
        handle.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *self.args], env={**os.environ, **self.env, **(extra_env or {})},
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        handle.close()
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def wait_died(self, timeout: float) -> int:
        """Wait until it exits by itself (a crash point); its return code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """A clean stop at the end of the test (kill if it lingers)."""
        if self.alive:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log.name}\n" + (self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "")


@dataclass
class Modality:
    """A mammography unit: sends each study on its own association and, like a real one, sends again
    whatever was not answered Success (a failure status, a refused or dropped association) until it is."""

    port: int
    calling_ae: str = "MAMO_SALA1"
    acknowledged: dict[str, bytes] = field(default_factory=dict)  # SOP Instance UID -> data set bytes sent
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _send_once(self, files: list[tuple[str, bytes, Any]]) -> list[str]:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for sop_class in sorted({str(ds.SOPClassUID) for _, _, ds in files}):
            ae.add_requested_context(sop_class, str(files[0][2].file_meta.TransferSyntaxUID))
        assoc = ae.associate("127.0.0.1", self.port, ae_title="MDD")
        if not assoc.is_established:
            self.failures["association"] += 1
            return [sop for sop, _, _ in files]
        pending = []
        try:
            for sop, raw, ds in files:
                if not assoc.is_established:  # the SCP went away mid-study: the rest is sent again later
                    self.failures["aborted"] += 1
                    pending.append(sop)
                    continue
                try:
                    status = assoc.send_c_store(ds)
                except RuntimeError:  # aborted between the check and the send (the SCP was killed): as above
                    if assoc.is_established:
                        raise
                    self.failures["aborted"] += 1
                    pending.append(sop)
                    continue
                if status and int(getattr(status, "Status", -1)) == 0x0000:
                    with self._lock:
                        self.acknowledged[sop] = data_set(raw)
                else:
                    self.failures[f"0x{int(getattr(status, 'Status', 0xFFFF)):04X}" if status else "dropped"] += 1
                    pending.append(sop)
        finally:
            if assoc.is_established:
                assoc.release()
        return pending

    def send(self, study: SyntheticStudy, deadline_s: float = 240.0) -> None:
        """Send the study until every instance is acknowledged (raises past the deadline)."""
        files = {}
        for view in study.views:
            raw = view.to_bytes()
            files[str(view.dataset.SOPInstanceUID)] = (raw, dcmread(io.BytesIO(raw)))
        pending = list(files)
        give_up = time.monotonic() + deadline_s
        pause = 0.2
        while pending:
            pending = self._send_once([(sop, *files[sop]) for sop in pending])
            if pending:
                assert time.monotonic() < give_up, f"instances never acknowledged: {pending} ({dict(self.failures)})"
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    def send_all(self, studies: list[SyntheticStudy], associations: int = 4) -> None:
        """Send studies on ``associations`` associations at once."""
        with ThreadPoolExecutor(associations) as pool:
            list(pool.map(self.send, studies))

    def in_background(self, studies: list[SyntheticStudy], associations: int = 4) -> "Sending":
        """``send_all`` in a thread; its outcome is checked by ``Sending.done``."""
        sending = Sending()

        def run() -> None:
            try:
                self.send_all(studies, associations)
            except BaseException as exc:  # reported by done()
                sending.error = exc

        sending.thread = threading.Thread(target=run, daemon=True)
        sending.thread.start()
        return sending


@dataclass
class Sending:
    """A modality sending in the background."""

    thread: threading.Thread | None = None
    error: BaseException | None = None

    def done(self) -> bool:
        """True once every instance is acknowledged; raises what stopped the modality."""
        if self.error is not None:
            raise AssertionError(f"the modality stopped: {self.error!r}") from self.error
        return self.thread is not None and not self.thread.is_alive()


def study_rows(engine: Engine, uids: list[str]) -> dict[str, dict[str, Any]]:
    """The status API's projection of these studies, by UID."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT study_uid, state, status_light, triage_light, failed, instance_count FROM status_study")
        ).mappings().all()
    wanted = set(uids)
    return {row["study_uid"]: dict(row) for row in rows if row["study_uid"] in wanted}


def scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def all_notified(engine: Engine, studies: list[SyntheticStudy]) -> bool:
    rows = study_rows(engine, [s.study_uid for s in studies])
    return len(rows) == len(studies) and all(row["state"] == "notified" for row in rows.values())


def settled(engine: Engine) -> bool:
    """Nothing left to publish, to send or to handle by any consumer that the database can see."""
    return (
        scalar(engine, "SELECT count(*) FROM reliability_outbox WHERE published_at IS NULL") == 0
        and scalar(engine, "SELECT count(*) FROM notify_delivery WHERE status IN ('pending', 'sending')") == 0
        and scalar(engine, "SELECT count(*) FROM reliability_consumed WHERE status IN ('running', 'failed')") == 0
    )


def unsettled(engine: Engine) -> dict[str, Any]:
    """What keeps ``settled`` false, for the report of a wait that timed out."""
    with engine.connect() as connection:
        return {
            "outbox": connection.execute(text(
                "SELECT event_type, count(*) FROM reliability_outbox WHERE published_at IS NULL GROUP BY event_type")).all(),
            "deliveries": connection.execute(text(
                "SELECT rule, status, detail FROM notify_delivery WHERE status IN ('pending', 'sending')")).all(),
            "consumed": connection.execute(text(
                "SELECT consumer, status, attempts, failures, last_error FROM reliability_consumed "
                "WHERE status IN ('running', 'failed')")).all(),
        }


def mails_by_study(sink: SmtpSink, accessions: list[str]) -> dict[tuple[str, str], set[str]]:
    """Distinct Message-IDs per (recipient, accession): a copy sent again after a crash carries the same id."""
    from email.header import decode_header, make_header

    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for recipients, message in sink.messages:
        subject = str(make_header(decode_header(str(message["Subject"]))))
        accession = next((a for a in accessions if a in subject), f"? {subject}")
        for recipient in recipients:
            found[(recipient, accession)].add(str(message["Message-ID"]))
    return found


def orthanc_results(http_url: str, study_uids: list[str]) -> dict[str, int]:
    """How many instances Orthanc holds of each of these studies."""
    return {
        uid: len(httpx.post(f"{http_url}/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": uid}},
                            timeout=30).json())
        for uid in study_uids
    }


@dataclass
class Expectations:
    """What the people and systems around must have received, derived from each study's triage light."""

    studies: list[SyntheticStudy]
    rows: dict[str, dict[str, Any]]

    def mails(self) -> Counter[tuple[str, str]]:
        wanted: Counter[tuple[str, str]] = Counter()
        for study in self.studies:
            wanted[(DOCTOR, study.accession_number)] = 1
            if self.rows[study.study_uid]["triage_light"] == "RED":
                wanted[(RADIOLOGY, study.accession_number)] = 1
        return wanted


def check_everything(
    engine: Engine,
    studies: list[SyntheticStudy],
    modality: Modality,
    read_object: Callable[[str], bytes],
    sink: SmtpSink,
    dead_letters_on_topic: Callable[[], int],
    orthanc_url: str | None = None,
) -> None:
    """The exact counts an operator checks after the faults: no more, no fewer."""
    rows = study_rows(engine, [s.study_uid for s in studies])
    # Every study with both lights; none failed.
    assert set(rows) == {s.study_uid for s in studies}
    for uid, row in rows.items():
        assert row["state"] == "notified" and row["status_light"] == "GREEN", row
        assert row["triage_light"] in ("RED", "YELLOW", "GREEN") and not row["failed"], row
        assert row["instance_count"] == len(next(s for s in studies if s.study_uid == uid).views), row
    # Every acknowledged instance is in the store, byte for byte as sent.
    expected_instances = {str(v.dataset.SOPInstanceUID): s for s in studies for v in s.views}
    assert set(modality.acknowledged) == set(expected_instances)
    with engine.connect() as connection:
        keys = dict(connection.execute(text("SELECT sop_instance_uid, object_key FROM ingest_instance")).all())
    for sop, sent in modality.acknowledged.items():
        assert data_set(read_object(keys[sop])) == sent, sop
    # Each e-mail once per rule and recipient (distinct Message-IDs), and nothing else.
    got = {key: len(ids) for key, ids in mails_by_study(sink, [s.accession_number for s in studies]).items()}
    assert got == dict(Expectations(studies, rows).mails()), got
    for _, message in sink.messages:
        assert "sintétic" in body_text(message).lower() or "synthetic" in body_text(message).lower()
    # The results at the PACS: the SR and the mosaic of each study, once.
    if orthanc_url is not None:
        at_pacs = orthanc_results(orthanc_url, list(rows))
        assert at_pacs == {uid: len(RESULT_KINDS) for uid in rows}, at_pacs  # the SR, the CAD SR and the mosaic
    # Nothing given up on.
    assert scalar(engine, "SELECT count(*) FROM reliability_dead_letter") == 0
    assert dead_letters_on_topic() == 0


async def kafka_lag(bootstrap: str, group_prefix: str) -> int:
    """Messages not yet committed by the system's consumer groups (every group whose name starts so)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        lag = 0
        for group, _ in [g for g in await admin.list_consumer_groups() if g[0].startswith(group_prefix)]:
            committed = await admin.list_consumer_group_offsets(group)
            if not committed:
                continue
            ends = await consumer.end_offsets(list(committed))
            lag += sum(max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def kafka_quiet(bootstrap: str, group_prefix: str) -> bool:
    return asyncio.run(kafka_lag(bootstrap, group_prefix)) == 0


def dlq_count(bootstrap: str, topic: str) -> int:
    """Messages on the dead-letter topic."""

    async def count() -> int:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or set()
            from aiokafka import TopicPartition

            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                return 0
            ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
            return sum(ends[tp] - starts[tp] for tp in tps)
        finally:
            await consumer.stop()

    return asyncio.run(count())


def dicom_instances(path: Path) -> dict[str, bytes]:
    """SOP Instance UID -> data set bytes of every file in a folder."""
    found = {}
    for file in path.iterdir():
        raw = file.read_bytes()
        found[str(dcmread(file, stop_before_pixels=True).SOPInstanceUID)] = data_set(raw)
    return found


SERVICES = ("status_api", "ingest", "preprocess", "infer", "notify")


@dataclass
class Servers:
    """Servers of one's own (Kafka, MinIO, PostgreSQL, Orthanc) and the handles that take them down."""

    kafka: KafkaInfo
    minio: S3Info
    postgres: PostgresInfo
    orthanc: OrthancInfo
    controls: dict[str, ServerControl]


@contextlib.contextmanager
def own_servers() -> Iterator[Servers]:
    """Start the four servers with controls (stopping them must not disturb anyone else)."""
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

    def launch(self) -> None:
        """Start every process (without waiting for them)."""
        for name in SERVICES:
            self.processes[name] = [self._process(name, i) for i in range(self.replicas[name])]
            for process in self.processes[name]:
                process.start()

    def start(self) -> None:
        self.launch()
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
