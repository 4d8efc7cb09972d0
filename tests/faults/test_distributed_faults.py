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

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.synth import SyntheticStudy
from tests.conftest import free_port
from tests.faults.harness import (
    SERVICES, Deployment, Modality, RestartableSmtp, Sending, Servers, in_flight, own_servers, progress, studies, wait_for,
)

PIPELINE_TIMEOUT_S = 480.0
OUTAGE_S = 30.0


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with own_servers() as found:
        yield found


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


def test_services_started_before_their_dependencies_wait_for_them(servers: Servers, tmp_path: Path) -> None:
    smtp = RestartableSmtp(free_port())
    system = Deployment(servers, tmp_path, smtp)  # its database exists; then everything it needs goes down
    down = ("kafka", "minio", "postgres")
    for name in down:
        servers.controls[name].stop(9)
    try:
        system.launch()
        # Every service is up and says what it waits for; none gives up.
        wait_for(lambda: all("Dependencia no disponible" in p.log.read_text(errors="replace")
                             for group in system.processes.values() for p in group if p.log.exists()),
                 120, "every service waiting for its dependencies", system.tails)
        assert all(p.alive for group in system.processes.values() for p in group), system.tails()
        for name in reversed(down):
            servers.controls[name].start()
        wait_for(system.ready, 180, "the deployment", system.tails)
        sent = studies(950, 3)
        system.modality.send_all(sent, associations=2)
        wait_for(lambda: system.caught_up(sent), PIPELINE_TIMEOUT_S, "every study notified", system.report(sent))
        system.check(sent)
    finally:
        for name in down:
            if not servers.controls[name].running:
                servers.controls[name].start()
        system.stop()
        smtp.stop()


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
