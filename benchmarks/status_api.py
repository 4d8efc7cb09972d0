"""The status API under load (prints its figures): the filtered study list over 100,000 studies in
PostgreSQL at a fixed request rate, and how fast events from Kafka are applied.

The status API runs as in production (``mdd serve status_api``: Kafka consumers, PostgreSQL, uvicorn),
by default as two replicas sharing the port (``MDD_API_REUSE_PORT``; the kernel spreads the
connections, Kafka the partitions). The studies are bulk-loaded into its table (20 hospitals, every
state and light, 90 days of dates); Vegeta (pinned, built by ``infra/vegeta/fetch.sh``) sends
``GET /studies`` filtered by hospital and status light, suspicious first, 50 per page, at a constant
``--rate`` requests/s on loopback whatever the answers' speed (open loop). Then ``--events`` pipeline
events (8 per study: four ``instance.stored``, ``study.completed``, ``study.preprocessed``,
``study.inferred``, ``notification.sent``) are published to Kafka at once; the rate is taken from the
first event applied to the last (and, for reference, from the first publish), reading the study
timeline table.

    .venv/bin/python benchmarks/status_api.py --studies 100000 --rate 200 --seconds 30 --events 16000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text

from infra.servers import free_ports, kafka_server, postgres_server
from shared.events import (
    BreastResult,
    Event,
    InstanceStored,
    NotificationSent,
    StudyCompleted,
    StudyInferred,
    StudyPreprocessed,
    ViewRef,
    follow_up,
    producer,
)
from shared.topics import topic_for
from services.status_api.state import STATUS_LABELS
from services.status_api.tables import StudyEventRow, StudyRow

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-admin-key-0123456789abcdef"
HOSPITALS = [f"H{number:02d}" for number in range(1, 21)]
STATES = [("receiving", "RED", None), ("completed", "YELLOW", None), ("preprocessed", "YELLOW", None),
          ("ready", "GREEN", "RED"), ("ready", "GREEN", "YELLOW"), ("notified", "GREEN", "GREEN"),
          ("reported", "GREEN", "GREEN"), ("failed", "RED", None)]


def seed_studies(url: str, count: int) -> float:
    """Bulk-load ``count`` studies; returns the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(url)
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    batch: list[dict[str, object]] = []
    with engine.begin() as connection:
        for index in range(count):
            state, status_light, triage = rng.choice(STATES)
            created = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
            batch.append({
                "study_uid": f"1.2.826.0.1.3680043.10.54321.{index}", "hospital_id": rng.choice(HOSPITALS),
                "accession_number": f"ACC{index:07d}", "correlation_id": f"corr-{index}", "progress": state,
                "state": state, "status_light": status_light, "triage_light": triage, "failed": state == "failed",
                "overdue": False, "instance_count": 4, "created_at": created,
                "updated_at": created + timedelta(seconds=rng.uniform(1, 600)),
            })
            if len(batch) == 5000:
                connection.execute(insert(StudyRow), batch)
                batch = []
        if batch:
            connection.execute(insert(StudyRow), batch)
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def vegeta() -> str:
    """The pinned Vegeta load generator (built with Go on first use)."""
    return subprocess.run(["bash", str(ROOT / "infra" / "vegeta" / "fetch.sh")], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def replica(env: dict[str, str], folder: Path, first: bool) -> Iterator[subprocess.Popen[bytes]]:
    """One ``mdd serve status_api`` process, ready (the first one also migrates the database)."""
    folder.mkdir(parents=True)
    log_path = folder / "status_api.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "status_api"],
                                   env={**env, "MDD_DATA_DIR": str(folder / "var")}, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "services ready" not in log_path.read_text(errors="replace"):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("status API did not start:\n" + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def load(base: str, rate: float, seconds: float, folder: Path) -> dict:
    """Open-loop GETs at ``rate``/s for ``seconds`` with Vegeta; its JSON report (latencies in ns)."""
    rng = random.Random(11)
    targets = Path(folder) / "targets.txt"
    with open(targets, "w") as out:
        for _ in range(2000):  # Vegeta goes round them in order
            out.write(f"GET {base}/studies?hospital_id={rng.choice(HOSPITALS)}&status_light={rng.choice(['RED', 'YELLOW', 'GREEN'])}"
                      f"&sort=triage&limit=50\nAuthorization: Bearer {API_KEY}\n\n")
    attack = subprocess.run(
        [vegeta(), "attack", f"-targets={targets}", f"-rate={rate:g}", f"-duration={seconds:g}s", "-timeout=5s", "-keepalive=true"],
        check=True, capture_output=True,
    )
    report = subprocess.run([vegeta(), "report", "-type=json"], input=attack.stdout, check=True, capture_output=True)
    return json.loads(report.stdout)


def pipeline_events(studies: int) -> list[Event]:
    """Eight events per new study, in pipeline order."""
    events: list[Event] = []
    for index in range(studies):
        uid = f"1.2.826.0.1.3680043.10.98765.{index}"
        stored = [
            InstanceStored(
                study_uid=uid, hospital_id=HOSPITALS[index % len(HOSPITALS)], correlation_id=f"ev-{index}",
                accession_number=f"EV{index:07d}", producer=producer("ingest"), sop_instance_uid=f"{uid}.{view}",
                series_instance_uid=f"{uid}.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2", transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="MG", laterality=laterality, view_position=position, object_key=f"H/{uid}/{view}.dcm",
                size_bytes=1000, sha256="0" * 64, patient_key="p", calling_ae="BENCH",
            )
            for view, (laterality, position) in enumerate((("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")))
        ]
        completed = follow_up(stored[0], StudyCompleted, "ingest", reason="all_views", views=[
            ViewRef(sop_instance_uid=s.sop_instance_uid, series_instance_uid=s.series_instance_uid, object_key=s.object_key,
                    laterality=s.laterality, view_position=s.view_position) for s in stored])
        preprocessed = follow_up(completed, StudyPreprocessed, "preprocess", views=[], segmentation_backend="classic")
        inferred = follow_up(preprocessed, StudyInferred, "infer", breasts=[
            BreastResult(laterality="L", malignancy_score=0.9, birads=5, density="B", views_used=["CC", "MLO"])],
            triage_light="RED", triage_reason="bench", model_name="bench", model_version="0", model_trained=True,
            model_trained_on="synthetic", disclaimer="synthetic")
        notified = follow_up(inferred, NotificationSent, "notify", rule="r", channel="email", recipient="x", status="sent")
        events += [*stored, completed, preprocessed, inferred, notified]
    return events


async def publish(bootstrap: str, events: list[Event]) -> None:
    from aiokafka import AIOKafkaProducer

    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await kafka.start()
    try:
        sends = [await kafka.send(topic_for(type(event), "mdd."), event.model_dump_json().encode(), key=event.study_uid.encode())
                 for event in events]
        await asyncio.gather(*sends)
    finally:
        await kafka.stop()


def applied_events(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(StudyEventRow)).scalar_one()
    engine.dispose()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--events", type=int, default=16_000, help="multiple of 8")
    parser.add_argument("--replicas", type=int, default=2, help="status API processes sharing the port (SO_REUSEPORT)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mdd-bench-api-") as folder, ExitStack() as stack:
        kafka = stack.enter_context(kafka_server())
        postgres = stack.enter_context(postgres_server())
        (api_port,) = free_ports(1)
        env = {
            **os.environ, "MDD_TRANSPORT": "kafka", "MDD_KAFKA_BOOTSTRAP": kafka.bootstrap, "MDD_DATABASE_URL": postgres.url,
            "MDD_API_PORT": str(api_port), "MDD_BOOTSTRAP_API_KEY": API_KEY, "MDD_STORE_BACKEND": "local",
            "MDD_LOG_LEVEL": "INFO", "MDD_API_REUSE_PORT": "true" if args.replicas > 1 else "false",
            "MDD_AUTH_JWT_SECRET": "bench-secret-shared-by-the-replicas-0123456789",
        }
        replicas = [stack.enter_context(replica(env, Path(folder) / f"replica-{n}", first=n == 0)) for n in range(args.replicas)]
        base = f"http://127.0.0.1:{api_port}"
        print(f"Cargando / loading {args.studies} estudios ...", flush=True)
        seeded = seed_studies(postgres.url, args.studies)
        load(base, 20, 3, Path(folder))  # warm-up
        report = load(base, args.rate, args.seconds, Path(folder))

        events = pipeline_events(args.events // 8)
        before = applied_events(postgres.url)
        started = time.perf_counter()
        asyncio.run(publish(kafka.bootstrap, events))
        published = time.perf_counter() - started
        first_seen: float | None = None
        while (count := applied_events(postgres.url)) < before + len(events):
            if first_seen is None and count > before:
                first_seen = time.perf_counter()
            if time.perf_counter() - started > 600 or any(process.poll() is not None for process in replicas):
                raise RuntimeError("events were not all applied")
            time.sleep(0.05)
        finished = time.perf_counter()
        applied = finished - started
        applying = finished - (first_seen or started)

    latency = {name: report["latencies"][key] / 1e6 for name, key in (("p50", "50th"), ("p99", "99th"), ("max", "max"))}
    failed = sum(count for code, count in report["status_codes"].items() if code != "200")
    print(f"\nAPI de estado / status API: {args.studies} estudios en PostgreSQL, {os.cpu_count()} CPU, loopback,"
          f" {args.replicas} réplica(s) en un puerto / replica(s) on one port")
    print(f"  carga inicial / bulk load: {seeded:.1f} s")
    print(f"  GET /studies (hospital + semáforo, sospechosos primero, 50/página) a {args.rate:.0f} req/s, {args.seconds:.0f} s (Vegeta):")
    print(f"    logrado / achieved {report['throughput']:.1f} req/s de {report['requests']} pedidas / requested,"
          f" no 200 o esperas > 5 s / not 200 or waits > 5 s: {failed}")
    print(f"    p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms")
    print(f"  eventos desde Kafka / events from Kafka: {len(events)} publicados en {published:.1f} s, todos aplicados"
          f" {applied:.1f} s después de empezar a publicar / all applied {applied:.1f} s after publishing began")
    print(f"    {len(events) / applying:.0f} eventos/s desde el primero aplicado / events/s from the first applied"
          f" ({len(events) / applied:.0f} contando desde el inicio de la publicación / counting from publishing)")
    print("Objetivos / targets: p99 < 50 ms a 200 req/s; ≥ 2,000 eventos/s aplicados")
    _ = STATUS_LABELS  # the states seeded are the status API's own


if __name__ == "__main__":
    main()
