"""Studies through the distributed system under faults, and sustained throughput without them.

Phase 1 (chaos): ``--studies`` studies (default 200) are pushed by four modalities while one service
is killed -9 every ``--kill-every`` seconds (round robin over the five), and each dependency —
MinIO, Kafka, PostgreSQL (killed -9), the SMTP server, the results PACS — is stopped once for
``--outage`` seconds. Prints what was acknowledged, what reached a light, what was lost, duplicate
notifications, p50/p95 time to light (first instance sent → ``study.inferred`` recorded) and, per
fault, the recovery time (the fault's end → the next study reaching a light).

Phase 2 (throughput): ``--full`` full-field four-view studies (3328x4096, 16 bits) with no faults;
prints studies per hour from the first instance sent to the last study with both lights.

    .venv/bin/python benchmarks/chaos.py --studies 200 --full 40

Targets: 0 lost, 0 duplicate notifications, p95 time to light under faults ≤ 3 min;
throughput ≥ 1,500 full-field studies per hour.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.synth import SyntheticStudy, make_study  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    SERVICES, Deployment, RestartableSmtp, Servers, all_notified, mails_by_study, own_servers, settled, study_rows, unsettled,
    wait_for,
)


def holds(probe: Callable[[], bool]) -> bool:
    """``probe()``, False while what it reads is down (the database during its own outage)."""
    try:
        return probe()
    except Exception:  # noqa: BLE001 - PostgreSQL killed on purpose
        return False


@dataclass
class Fault:
    """One fault: what, when it ended, and when the pipeline next produced a light."""

    name: str
    ended_at: float
    recovered_at: float | None = None


def lights_at(system: Deployment, studies: list[SyntheticStudy]) -> dict[str, float]:
    """When each study's ``study.inferred`` was recorded (epoch seconds)."""
    uids = {s.study_uid for s in studies}
    with system.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT study_uid, min(received_at) FROM status_event WHERE event_type = 'study.inferred' GROUP BY study_uid"
        )).all()
    return {uid: _epoch(at) for uid, at in rows if uid in uids}


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class SendTimes:
    """When the modality began sending each study."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}


def send_timed(system: Deployment, studies: list[SyntheticStudy], times: SendTimes, associations: int = 4) -> threading.Thread:
    def one(study: SyntheticStudy) -> None:
        times.started[study.study_uid] = time.time()
        system.modality.send(study, deadline_s=3600)

    def run() -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(associations) as pool:
            list(pool.map(one, studies))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def chaos(servers: Servers, root: Path, count: int, kill_every: float, outage: float) -> None:
    smtp = RestartableSmtp(free_port())
    (root / "chaos").mkdir()
    system = Deployment(servers, root / "chaos", smtp)
    system.start()
    studies = [make_study(seed=40_000 + i, finding="mass" if i % 4 == 0 else None) for i in range(count)]
    times = SendTimes()
    sender = send_timed(system, studies, times)
    faults: list[Fault] = []
    dependencies = [
        ("minio", lambda: servers.controls["minio"].stop(9), servers.controls["minio"].start),
        ("kafka", lambda: servers.controls["kafka"].stop(9), servers.controls["kafka"].start),
        ("postgres", lambda: servers.controls["postgres"].stop(9), servers.controls["postgres"].start),
        ("smtp", smtp.stop, smtp.start),
        ("pacs", lambda: servers.controls["orthanc"].stop(9), servers.controls["orthanc"].start),
    ]
    services = itertools.cycle(SERVICES)
    started = time.time()
    next_kill = started + kill_every
    next_outage = started + kill_every / 2
    outage_end: float | None = None
    current: tuple[str, object, object] | None = None
    # Until every study has its lights and every dependency has been down once (the last outages may
    # come after the last study, and the system must still come back from them).
    while sender.is_alive() or dependencies or current is not None or not holds(lambda: all_notified(system.engine, studies)):
        now = time.time()
        if now >= next_kill and (sender.is_alive() or len(faults) < 2 * len(SERVICES)):
            name = next(services)
            system.kill(name)
            faults.append(Fault(f"kill -9 {name}", time.time()))
            next_kill = now + kill_every
        if current is None and dependencies and now >= next_outage:
            current = dependencies.pop(0)
            current[1]()  # type: ignore[operator]
            outage_end = now + outage
        if current is not None and outage_end is not None and now >= outage_end:
            current[2]()  # type: ignore[operator]
            faults.append(Fault(f"{current[0]} {outage:.0f} s", time.time()))
            current, next_outage = None, time.time() + kill_every
        if now - started > 3 * 3600:
            raise SystemExit("más de 3 h / more than 3 h: stopping")
        time.sleep(0.5)
    wait_for(lambda: holds(lambda: settled(system.engine)), 600, "the deployment settled",
             lambda: f"{unsettled(system.engine)}\n{system.tails()}")
    lights = lights_at(system, studies)
    for fault in faults:
        after = [at for at in lights.values() if at > fault.ended_at]
        fault.recovered_at = min(after) if after else None
    rows = study_rows(system.engine, [s.study_uid for s in studies])
    acknowledged_instances = len(system.modality.acknowledged)
    lost_instances = sum(1 for s in studies for v in s.views if str(v.dataset.SOPInstanceUID) not in system.modality.acknowledged)
    with_light = sum(1 for row in rows.values() if row["triage_light"] and row["status_light"] == "GREEN")
    mails = mails_by_study(smtp.sink, [s.accession_number for s in studies])
    duplicates = sum(len(ids) - 1 for ids in mails.values() if len(ids) > 1)
    copies = len(smtp.sink.messages) - sum(len(ids) for ids in mails.values())
    to_light = [lights[s.study_uid] - times.started[s.study_uid] for s in studies if s.study_uid in lights]
    failed = sum(1 for row in rows.values() if row["failed"])
    print(f"\nCaos / chaos: {count} estudios, kill -9 cada {kill_every:.0f} s, cada dependencia caída una vez ({outage:.0f} s), "
          f"{os.cpu_count()} CPU")
    print(f"  instancias reconocidas / acknowledged instances: {acknowledged_instances} de {4 * count}")
    print(f"  estudios con semáforo / studies with both lights: {with_light} de {count}; fallidos / failed: {failed}")
    print(f"  perdidos / lost: {count - with_light} estudios, {lost_instances} instancias")
    print(f"  notificaciones duplicadas / duplicate notifications: {duplicates} "
          f"(copias reenviadas con el mismo Message-ID / resent copies with the same Message-ID: {copies})")
    print(f"  tiempo a semáforo / time to light: p50 {percentile(to_light, 0.5):.1f} s, p95 {percentile(to_light, 0.95):.1f} s, "
          f"max {max(to_light):.1f} s")
    for fault in faults:
        recovery = f"{fault.recovered_at - fault.ended_at:.1f} s" if fault.recovered_at else "—"
        print(f"  {fault.name:<24} recuperación / recovery: {recovery}")
    system.stop()
    smtp.stop()


def throughput(servers: Servers, root: Path, count: int) -> None:
    smtp = RestartableSmtp(free_port())
    (root / "throughput").mkdir()
    system = Deployment(servers, root / "throughput", smtp)
    system.start()
    print("\nGenerando estudios de campo completo / generating full-field studies ...", flush=True)
    studies = [make_study(seed=50_000 + i, rows=4096, cols=3328, finding="mass" if i % 4 == 0 else None) for i in range(count)]
    times = SendTimes()
    sender = send_timed(system, studies, times, associations=2)
    wait_for(lambda: not sender.is_alive() and all_notified(system.engine, studies), 3 * 3600, "every full-field study")
    lights = lights_at(system, studies)
    elapsed = max(lights.values()) - min(times.started.values())
    to_light = [lights[uid] - times.started[uid] for uid in lights]
    print(f"\nRendimiento sostenido / sustained throughput: {count} estudios de 4 vistas 3328x4096, sin fallas, "
          f"{os.cpu_count()} CPU")
    print(f"  {elapsed:.0f} s → {count / elapsed * 3600:.0f} estudios por hora / studies per hour; "
          f"tiempo a semáforo p50 {statistics.median(to_light):.1f} s, p95 {percentile(to_light, 0.95):.1f} s")
    system.stop()
    smtp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=15.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--full", type=int, default=40, help="estudios de campo completo / full-field studies (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mdd-chaos-") as folder, own_servers() as servers:
        root = Path(folder)
        if args.studies:
            chaos(servers, root, args.studies, args.kill_every, args.outage)
        if args.full:
            throughput(servers, root, args.full)


if __name__ == "__main__":
    main()
