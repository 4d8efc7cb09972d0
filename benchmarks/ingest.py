"""Ingest throughput against Orthanc, side by side in one run, both fed by dcmtk's storescu.

Our SCP runs in the distributed mode (`mdd serve ingest`: MinIO store, events on Kafka, PostgreSQL),
Orthanc (Debian package) in its default configuration, on the same machine. Three cases: (a) small
512x416 instances on one association, (b) full-field 3328x4096 16-bit MG instances (about 27 MB
each), (c) the small instances split over 4 associations sending at once (modalities in parallel;
studies are assembled under a per-study row lock in the database, not a process lock), (d) as (c)
with another corpus sent to two ingest replicas, two associations each (compared with Orthanc's (c)). Prints
instances/s, MB/s, p50/p99 per-instance latency for both, the ratios, the CPU time each server
spends per instance (ours: the ingest process plus MinIO, Kafka and PostgreSQL; Orthanc: its
process), and the ingest process's peak memory.

    .venv/bin/python benchmarks/ingest.py --small 500 --full 40
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.servers import dcmtk_tool, free_ports, kafka_server, minio_server, orthanc_server, postgres_server
from shared.synth import make_view, study_identity

ASSOCIATIONS = 4


#: The processes whose CPU time counts as each server's, by /proc command name (ingest by its pid).
SERVER_PROCESSES: dict[str, tuple[str, ...]] = {"MDD": ("minio", "java", "postgres"), "Orthanc": ("Orthanc",)}


@dataclass
class Run:
    """One corpus sent to one server."""

    instances: int
    megabytes: float
    seconds: float
    latencies: list[float]
    cpu_seconds: float = float("nan")

    @property
    def cpu_ms_per_instance(self) -> float:
        return 1000 * self.cpu_seconds / self.instances

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def write_corpus(folder: Path, count: int, rows: int, cols: int, seed: int) -> float:
    """``count`` distinct MG instances; returns their total size in MB."""
    folder.mkdir(parents=True)
    for index in range(count):
        identity = study_identity(seed=seed + index // 4)
        laterality, view = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))[index % 4]
        make_view(laterality=laterality, view=view, rows=rows, cols=cols, seed=seed + index, study=identity).save(
            folder / f"{index:05d}.dcm"
        )
    return sum(path.stat().st_size for path in folder.iterdir()) / 1e6


def send(folder: Path, port: int, called_ae: str, megabytes: float) -> Run:
    """storescu the whole folder on one association, timing each request from its log lines."""
    command = ["stdbuf", "-oL", "-eL", dcmtk_tool("storescu"), "-v", "-aet", "BENCH", "-aec", called_ae,
               "+sd", "127.0.0.1", str(port), str(folder)]
    started = time.perf_counter()
    sent_at: float | None = None
    latencies: list[float] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if "Sending Store Request" in line:
                sent_at = time.perf_counter()
            elif "Received Store Response" in line and sent_at is not None:
                if "Success" not in line:
                    raise RuntimeError(f"{called_ae}: {line.strip()}")
                latencies.append(time.perf_counter() - sent_at)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"storescu to {called_ae} failed ({process.returncode})")
    return Run(len(latencies), megabytes, elapsed, latencies)


def send_parallel(folders: list[Path], ports: list[int], called_ae: str, megabytes: float) -> Run:
    """One storescu per folder, all at once, to the ``ports`` in turn; instances/s over the wall time of the slowest."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(len(folders)) as pool:
        runs = list(pool.map(lambda n: send(folders[n], ports[n % len(ports)], called_ae, 0.0), range(len(folders))))
    elapsed = time.perf_counter() - started
    return Run(sum(r.instances for r in runs), megabytes, elapsed, [latency for r in runs for latency in r.latencies])


def split(folder: Path, parts: int) -> list[Path]:
    """The instances of ``folder`` in ``parts`` sub-folders of whole studies (hard links)."""
    files = sorted(folder.iterdir())
    targets = [folder.parent / f"{folder.name}-{n}" for n in range(parts)]
    for target in targets:
        target.mkdir()
    for index, path in enumerate(files):
        os.link(path, targets[(index // 4) % parts] / path.name)
    return targets


def cpu_seconds(names: tuple[str, ...], pids: tuple[int, ...] = ()) -> float:
    """User plus system CPU time so far of the processes with these command names or pids."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if name in names or int(entry.name) in pids:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def measured(server: str, ingest_pids: tuple[int, ...], sending: Callable[[], Run]) -> Run:
    """``sending()`` with the CPU time the server's processes spent meanwhile."""
    pids = ingest_pids if server == "MDD" else ()
    before = cpu_seconds(SERVER_PROCESSES[server], pids)
    run = sending()
    run.cpu_seconds = cpu_seconds(SERVER_PROCESSES[server], pids) - before
    return run


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a running process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def ingest_replica(base_env: dict[str, str], root: Path, name: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``mdd serve ingest`` in the distributed mode, on its own ports and data folder; the process and its DICOM port."""
    dicom_port, http_port = free_ports(2)
    env = {**base_env, "MDD_DATA_DIR": str(root / name), "MDD_DICOM_PORT": str(dicom_port), "MDD_INGEST_HTTP_PORT": str(http_port)}
    with open(root / f"{name}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_echo(dicom_port, "MDD")
            yield process, dicom_port
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_for_echo(port: int, called_ae: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([dcmtk_tool("echoscu"), "-aec", called_ae, "127.0.0.1", str(port)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{called_ae} on port {port} did not answer C-ECHO")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--full", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mdd-bench-") as folder, ExitStack() as stack:
        root = Path(folder)
        print("Generando corpus / generating corpora ...", flush=True)
        corpora = {
            "a) 512x416": (root / "small", write_corpus(root / "small", args.small, 512, 416, 10_000)),
            "b) 3328x4096": (root / "full", write_corpus(root / "full", args.full, 4096, 3328, 20_000)),
        }
        parallel_mb = write_corpus(root / "small-c", args.small, 512, 416, 30_000)
        parallel = (f"c) 512x416 x{ASSOCIATIONS}", split(root / "small-c", ASSOCIATIONS), parallel_mb)
        replicated_mb = write_corpus(root / "small-d", args.small, 512, 416, 40_000)
        replicated = ("d) x4 2 répl.", split(root / "small-d", ASSOCIATIONS), replicated_mb)
        kafka = stack.enter_context(kafka_server())
        minio = stack.enter_context(minio_server())
        postgres = stack.enter_context(postgres_server())
        orthanc = stack.enter_context(orthanc_server())
        env = {
            **os.environ,
            "MDD_TRANSPORT": "kafka", "MDD_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MDD_STORE_BACKEND": "minio", "MDD_MINIO_ENDPOINT": minio.endpoint,
            "MDD_MINIO_ACCESS_KEY": minio.access_key, "MDD_MINIO_SECRET_KEY": minio.secret_key,
            "MDD_DATABASE_URL": postgres.url,
            "MDD_STUDY_QUIET_SECONDS": "3600", "MDD_LOG_LEVEL": "WARNING", "MDD_MIN_FREE_BYTES": "0",
        }
        ingest, dicom_port = stack.enter_context(ingest_replica(env, root, "ingest-1"))
        wait_for_echo(orthanc.dicom_port, orthanc.ae_title)
        results: dict[tuple[str, str], Run] = {}
        for corpus, (path, megabytes) in corpora.items():
            results[(corpus, "MDD")] = measured("MDD", (ingest.pid,), lambda: send(path, dicom_port, "MDD", megabytes))
            results[(corpus, "Orthanc")] = measured(
                "Orthanc", (), lambda: send(path, orthanc.dicom_port, orthanc.ae_title, megabytes))
        name, folders, megabytes = parallel
        results[(name, "MDD")] = measured("MDD", (ingest.pid,), lambda: send_parallel(folders, [dicom_port], "MDD", megabytes))
        results[(name, "Orthanc")] = measured(
            "Orthanc", (), lambda: send_parallel(folders, [orthanc.dicom_port], orthanc.ae_title, megabytes))
        peak = peak_rss_mb(ingest.pid)
        second, second_port = stack.enter_context(ingest_replica(env, root, "ingest-2"))
        replicas_name, replica_folders, replica_mb = replicated
        results[(replicas_name, "MDD")] = measured(
            "MDD", (ingest.pid, second.pid), lambda: send_parallel(replica_folders, [dicom_port, second_port], "MDD", replica_mb))
        results[(replicas_name, "Orthanc")] = results[(name, "Orthanc")]

    print(f"\nIngesta / ingest: MDD (modo distribuido: MinIO + Kafka + PostgreSQL) vs Orthanc (Debian), storescu, {os.cpu_count()} CPU")
    print(f"{'corpus':<14}{'servidor':<10}{'inst/s':>9}{'MB/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/inst':>13}")
    for corpus in [*corpora, parallel[0], replicated[0]]:
        for server in ("MDD", "Orthanc"):
            run = results[(corpus, server)]
            print(f"{corpus:<14}{server:<10}{run.per_second:>9.1f}{run.mb_per_second:>9.1f}{run.percentile(0.5):>9.1f}"
                  f"{run.percentile(0.99):>9.1f}{run.cpu_ms_per_instance:>13.1f}")
        ours, theirs = results[(corpus, "MDD")], results[(corpus, "Orthanc")]
        print(f"{'':<14}{'MDD/Orthanc':<10}{ours.per_second / theirs.per_second:>8.2f}x{ours.mb_per_second / theirs.mb_per_second:>8.2f}x")
    print(f"Memoria pico del proceso ingest / ingest peak memory: {peak:.0f} MB")
    print("CPU ms/inst: MDD = proceso ingest + MinIO + Kafka + PostgreSQL / ingest process plus MinIO, Kafka and "
          "PostgreSQL; Orthanc = su proceso / its process")
    print("(d): 2 procesos ingest, 2 asociaciones cada uno, contra el (c) de Orthanc / 2 ingest replicas, 2 associations "
          "each, against Orthanc's (c)")
    print("Objetivos / targets: (a) ≥ 2x inst/s de Orthanc, (b) ≥ 1.5x MB/s, (c) ≥ 3x inst/s, memoria < 500 MB")


if __name__ == "__main__":
    main()
