"""Per-image preprocessing time and peak memory, SAM time and Ray speed-up (prints its figures).

Cases, each measured in its own subprocess so that peak memory belongs to that case alone:

- ``classic`` on a full-field 3328x4096 16-bit synthetic MLO view, uncompressed and JPEG 2000
  (lossless, encoded with pydicom + pylibjpeg-openjpeg), pinned to ONE CPU core with one thread:
  reading the file plus :func:`shared.imaging.pipeline.preprocess_view` (decode, display,
  orient, segment, pectoral muscle, crop, magma, 336x224 model input), then the service's output
  files apart. Peak memory: the process's maximum resident set (``VmHWM``, interpreter and
  libraries included) and the Python/NumPy allocations of one image (``tracemalloc``).
- ``sam``: SAM ``vit_b`` with random weights (no official checkpoint here) on the same image,
  every core of the machine, or the GPU with ``--device cuda``.
- Ray: ``N`` images of 1024x832 through :func:`mlkit.preprocessing.batch.prepare_dataset`, in one
  process (``workers=0``) against a local Ray cluster with ``--ray-cpus`` CPUs. The load average
  is printed: a speed-up needs idle cores.

    .venv/bin/python benchmarks/preprocess.py --repeat 5
    .venv/bin/python benchmarks/preprocess.py --device cuda --skip-classic --skip-ray
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FULL_ROWS, FULL_COLS = 4096, 3328
TARGET_SECONDS = 0.5
_SINGLE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


# --- child: one case in a fresh process ------------------------------------------------------------


def _peak_rss_mib() -> float:
    """Peak resident set of this process (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(path: Path, backend: str, repeat: int, device: str, pin: bool) -> dict[str, Any]:
    """Time ``repeat`` reads + ``preprocess_view`` of one file after a warm-up; measure memory."""
    if pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import tracemalloc

    import pydicom

    from shared.imaging.pipeline import derived_files, oriented_image, preprocess_view
    from shared.imaging.segmentation import ClassicSegmenter

    threads = 1 if pin else os.cpu_count() or 1
    if backend == "sam":
        import torch
        from segment_anything import sam_model_registry

        from shared.imaging.sam import SamSegmenter

        if pin:
            torch.set_num_threads(1)
        threads = torch.get_num_threads()
        torch.manual_seed(0)
        model = sam_model_registry["vit_b"](checkpoint=None).to(device)
        segmenter: Any = SamSegmenter(device=device, model=model)
    else:
        segmenter = ClassicSegmenter()
    rss_before = _peak_rss_mib()

    def once() -> dict[str, float]:
        started, cpu = time.perf_counter(), time.process_time()
        result = preprocess_view(pydicom.dcmread(path), segmenter)
        per_image, per_image_cpu = time.perf_counter() - started, time.process_time() - cpu
        started = time.perf_counter()
        derived_files(result)
        files = time.perf_counter() - started
        # The same steps again, timed apart: read + decode + display + orient, then segment.
        started = time.perf_counter()
        prepared = oriented_image(pydicom.dcmread(path))
        decoded = time.perf_counter()
        segmenter.segment(prepared.image, prepared.view)
        return {"per_image": per_image, "per_image_cpu": per_image_cpu, "read_decode_display": decoded - started,
                "segment": time.perf_counter() - decoded, "files": files}

    once()  # warm-up: imports, colour table, lazy plugin loading
    runs = [once() for _ in range(repeat)]
    tracemalloc.start()
    preprocess_view(pydicom.dcmread(path), segmenter)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        **{key: statistics.median(run[key] for run in runs) for key in runs[0]},
        "per_image_min": min(run["per_image"] for run in runs),
        "per_image_max": max(run["per_image"] for run in runs),
        "traced_peak_mib": traced_peak / 2**20,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _peak_rss_mib(),
        "threads": threads,
        "cpus": len(os.sched_getaffinity(0)),
        "device": device,
    }


# --- parent --------------------------------------------------------------------------------------


def write_images(folder: Path) -> dict[str, Path]:
    """The full-field view, uncompressed and as lossless JPEG 2000."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from shared.synth import make_view

    view = make_view(laterality="L", view="MLO", rows=FULL_ROWS, cols=FULL_COLS, seed=2024, density=0.5, finding="mass")
    raw = view.save(folder / "full_field.dcm")
    dataset = pydicom.dcmread(raw)
    dataset.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    j2k = folder / "full_field_j2k.dcm"
    dataset.save_as(j2k, enforce_file_format=True)
    return {"uncompressed": raw, "jpeg2000": j2k}


def measure_in_child(path: Path, backend: str, repeat: int, device: str, pin: bool) -> dict[str, Any]:
    """Run :func:`run_case` in a fresh interpreter (pinned runs get one thread per library)."""
    env = {**os.environ, **(_SINGLE_THREAD_ENV if pin else {})}
    command = [sys.executable, __file__, "--child", str(path), "--backend", backend, "--repeat", str(repeat),
               "--device", device] + (["--pin"] if pin else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {backend} {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_case(label: str, size_mib: float, figures: dict[str, Any], target: bool) -> None:
    where = f"{figures['cpus']} núcleo(s) / core(s), {figures['threads']} hilo(s) / thread(s), {figures['device']}"
    print(f"{label} ({size_mib:.1f} MiB en disco / on disk; {where})")
    print(f"  por imagen / per image (leer + preprocess_view): mediana / median {figures['per_image']:.3f} s "
          f"(mín {figures['per_image_min']:.3f}, máx {figures['per_image_max']:.3f}); "
          f"tiempo de CPU / CPU time {figures['per_image_cpu']:.3f} s")
    print(f"    leer+decodificar+desplegar / read+decode+display {figures['read_decode_display']:.3f} s, "
          f"segmentar / segment {figures['segment']:.3f} s")
    print(f"  archivos del servicio / service files (mask, crop, magma PNG + input.npy): {figures['files']:.3f} s")
    print(f"  memoria pico / peak memory: RSS {figures['rss_peak_mib']:.0f} MiB (tras importar / after imports "
          f"{figures['rss_before_mib']:.0f} MiB), tracemalloc {figures['traced_peak_mib']:.0f} MiB")
    if target:
        verdict = "CUMPLE / MET" if figures["per_image"] <= TARGET_SECONDS else "NO CUMPLE / NOT MET"
        print(f"  objetivo / target ≤ {TARGET_SECONDS} s en un núcleo / on one core (mediana / median): {verdict}")


def measure_ray(images: int, cpus: int, rows: int = 1024, cols: int = 832) -> None:
    """One process against a local Ray cluster on the same folder of ``rows x cols`` views."""
    import logging

    import ray

    from mlkit.preprocessing.batch import prepare_dataset
    from shared.settings import Settings
    from shared.synth import make_study

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "src"
        for seed in range((images + 3) // 4):
            study = make_study(seed=500 + seed, rows=rows, cols=cols, density=0.1 + 0.2 * (seed % 4))
            for view in study.views[: images - 4 * seed]:
                view.save(source / study.accession_number / f"{view.laterality}_{view.view}.dcm")
        settings = Settings()
        prepare_dataset(source, Path(folder) / "warm", settings, workers=0)  # warm caches and imports
        serial = prepare_dataset(source, Path(folder) / "serial", settings, workers=0)
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        startup = time.perf_counter() - started
        try:
            prepare_dataset(source, Path(folder) / "ray_warm", settings, workers=cpus)  # workers import once
            parallel = prepare_dataset(source, Path(folder) / "ray", settings, workers=cpus)
        finally:
            ray.shutdown()
    assert serial.counts["processed"] == parallel.counts["processed"] == images
    busy = sum(row.seconds for row in parallel.rows) / sum(row.seconds for row in serial.rows)
    print(f"Ray: {images} imágenes / images {cols}x{rows} (prepare_dataset, magma.png + input.npy)")
    print(f"  un proceso / one process: {serial.wall_seconds:.2f} s ({serial.wall_seconds / images:.3f} s/imagen)")
    print(f"  Ray {cpus} CPU: {parallel.wall_seconds:.2f} s ({parallel.wall_seconds / images:.3f} s/imagen), "
          f"aceleración / speed-up x{serial.wall_seconds / parallel.wall_seconds:.2f}; "
          f"arranque de Ray / Ray start-up {startup:.1f} s aparte / not included")
    print(f"  tiempo por tarea bajo Ray / per-task time under Ray: x{busy:.2f} el de un proceso / of one process; "
          f"carga de la máquina / load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case after one warm-up")
    parser.add_argument("--device", default="cpu", help="device for SAM: cpu or cuda")
    parser.add_argument("--sam-repeat", type=int, default=2)
    parser.add_argument("--ray-images", type=int, default=16)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--ray-rows", type=int, default=1024)
    parser.add_argument("--ray-cols", type=int, default=832)
    parser.add_argument("--skip-classic", action="store_true")
    parser.add_argument("--skip-sam", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="classic", help=argparse.SUPPRESS)
    parser.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(run_case(args.child, args.backend, args.repeat, args.device, args.pin)))
        return

    print(f"Máquina / machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU, "
          f"Python {platform.python_version()}, carga / load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        files = write_images(Path(folder))
        sizes = {name: path.stat().st_size / 2**20 for name, path in files.items()}
        if not args.skip_classic:
            for name, path in files.items():
                figures = measure_in_child(path, "classic", args.repeat, "cpu", pin=True)
                print_case(f"classic, {FULL_COLS}x{FULL_ROWS} 16 bits, {name}", sizes[name], figures, target=name == "uncompressed")
        if not args.skip_sam:
            figures = measure_in_child(files["uncompressed"], "sam", args.sam_repeat, args.device, pin=False)
            print_case(f"sam vit_b (pesos aleatorios / random weights), {FULL_COLS}x{FULL_ROWS}, uncompressed",
                       sizes["uncompressed"], figures, target=False)
    if not args.skip_ray:
        measure_ray(args.ray_images, args.ray_cpus, args.ray_rows, args.ray_cols)


if __name__ == "__main__":
    main()
