"""Preprocesamiento por lotes / batch preprocessing of a folder, on Ray or in one process.

Every image goes through the per-view function the preprocess service uses
(:func:`shared.imaging.pipeline.preprocess_view`) and leaves, under the destination folder,
``<relative path without extension>/magma.png`` and ``.../input.npy`` (the 336x224x3 model input),
as the seed's Ray job did (``all_files`` adds the service's ``mask.png`` and ``crop.png``; every
file is the service's own, from :func:`~shared.imaging.pipeline.derived_files`), plus
``manifest.csv`` and ``manifest.json`` with one row per file: processed, skipped (not an image
this pipeline reads) or failed (with the error).

DDSM ``.LJPEG`` files are read by ``mlkit.datasets.ddsm.read_ljpeg_dataset`` (the DDSM
decoder ``read_ljpeg`` plus the case's ``.ics``, as a minimal MG dataset); where that module is
not installed they are reported as skipped with the reason.

With ``workers >= 1`` the files are spread over a Ray cluster (a local one started here, or an
existing one at ``address``; then every node needs the project installed and both folders on a
shared file system). ``workers = 0`` runs everything in this process, for comparison and debugging.
"""

from __future__ import annotations

import csv
import functools
import importlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Final, Literal

import pydicom
from pydantic import BaseModel, Field, computed_field

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.imaging.segmentation import Segmenter

Status = Literal["processed", "skipped", "failed"]

DICOM_SUFFIXES: Final[frozenset[str]] = frozenset({".dcm", ".dicom", ".dic"})
LJPEG_SUFFIX: Final[str] = ".ljpeg"
LJPEG_DECODER: Final[str] = "mlkit.datasets.ddsm:read_ljpeg_dataset"
#: Files written per image unless all of the service's derived files are asked for.
DEFAULT_FILES: Final[tuple[str, ...]] = ("magma.png", "input.npy")
MANIFEST_FIELDS: Final[tuple[str, ...]] = (
    "source", "status", "reason", "sop_instance_uid", "study_uid", "laterality", "view",
    "breast_area_fraction", "flags", "segmentation_backend", "magma_png", "input_npy", "seconds",
)
#: Tasks kept in flight per Ray CPU, so a huge folder does not queue every task at once.
_IN_FLIGHT_PER_CPU: Final[int] = 4


class ManifestRow(BaseModel):
    """What happened to one source file."""

    source: str = Field(description="Ruta relativa a SRC / path relative to SRC")
    status: Status
    reason: str = ""
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    laterality: str | None = None
    view: str | None = None
    breast_area_fraction: float | None = None
    flags: list[str] = Field(default_factory=list)
    segmentation_backend: str | None = None
    magma_png: str | None = Field(None, description="Relativa a DST / relative to DST")
    input_npy: str | None = None
    seconds: float = 0.0

    def csv_row(self) -> dict[str, Any]:
        """The row as ``manifest.csv`` writes it (flags joined by ``;``, empty for None)."""
        data = self.model_dump()
        data["flags"] = ";".join(self.flags)
        data["seconds"] = round(self.seconds, 4)
        return {k: ("" if data[k] is None else data[k]) for k in MANIFEST_FIELDS}


class PrepSummary(BaseModel):
    """The outcome of one batch run."""

    source: str
    destination: str
    mode: Literal["ray", "serial"]
    workers: int
    wall_seconds: float
    rows: list[ManifestRow]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Files per status."""
        tally = Counter(row.status for row in self.rows)
        return {status: tally.get(status, 0) for status in ("processed", "skipped", "failed")}

    def reasons(self) -> list[tuple[Status, str, int, str]]:
        """(status, reason, count, first file) for every skipped or failed reason, most frequent first."""
        groups: dict[tuple[Status, str], list[str]] = {}
        for row in self.rows:
            if row.status != "processed":
                groups.setdefault((row.status, row.reason), []).append(row.source)
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        return [(status, reason, len(files), files[0]) for (status, reason), files in ordered]


def discover(source: Path) -> list[str]:
    """Candidate images under ``source`` as sorted POSIX paths relative to it.

    DICOM by extension (``.dcm``, ``.dicom``, ``.dic``) or without one (as PACS exports write
    them), and DDSM ``.LJPEG`` files; other files (DDSM ``.ics``/``.OVERLAY``, PNG, notes) are
    not candidates. Hidden files are ignored.
    """
    found = []
    for path in source.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in DICOM_SUFFIXES or suffix == LJPEG_SUFFIX or suffix == "":
            found.append(path.relative_to(source).as_posix())
    return sorted(found)


def _ljpeg_reader() -> Callable[[Path], Any] | None:
    """The DDSM reader named by :data:`LJPEG_DECODER`, or ``None`` when it is not installed."""
    module_name, _, attribute = LJPEG_DECODER.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    reader = getattr(module, attribute, None)
    return reader if callable(reader) else None


class SkipFile(Exception):
    """A file this pipeline does not read (reported as skipped, not failed)."""


def read_source(path: Path) -> pydicom.Dataset:
    """Read one source file as a dataset; :class:`SkipFile` says why a file is not an image here."""
    if path.suffix.lower() == LJPEG_SUFFIX:
        reader = _ljpeg_reader()
        if reader is None:
            raise SkipFile(
                f"decodificador LJPEG no disponible ({LJPEG_DECODER}) / LJPEG decoder not available"
            )
        dataset = reader(path)
        if not isinstance(dataset, pydicom.Dataset):
            raise TypeError(f"{LJPEG_DECODER} devolvió {type(dataset).__name__}, no un Dataset / did not return a Dataset")
        return dataset
    try:
        return pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as exc:
        raise SkipFile("no es un archivo DICOM / not a DICOM file") from exc


@functools.cache
def _segmenter(settings_json: str) -> Segmenter:
    from shared.imaging.segmentation import build_segmenter

    return build_segmenter(Settings.model_validate_json(settings_json))


def segmenter_for(settings: Settings) -> Segmenter:
    """The segmenter of these settings, built once per process (a SAM model loads once per worker)."""
    return _segmenter(settings.model_dump_json())


def prepare_file(
    source_root: str, relative: str, destination_root: str, settings_json: str, all_files: bool = False
) -> ManifestRow:
    """Preprocess one file with the service's per-view function and write its outputs.

    Never raises: errors become a ``failed`` row with the exception, unreadable inputs a
    ``skipped`` row. This is the function each Ray task runs.
    """
    from shared.imaging.pipeline import derived_files, preprocess_view

    started = time.perf_counter()
    try:
        dataset = read_source(Path(source_root) / relative)
    except SkipFile as exc:
        return ManifestRow(source=relative, status="skipped", reason=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - reported per file
        return ManifestRow(source=relative, status="failed", reason=f"{type(exc).__name__}: {exc}",
                           seconds=time.perf_counter() - started)
    row = ManifestRow(
        source=relative,
        status="failed",
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "") or "") or None,
        study_uid=str(dataset.get("StudyInstanceUID", "") or "") or None,
    )
    try:
        result = preprocess_view(dataset, _segmenter(settings_json))
        stem = PurePath(relative).with_suffix("").as_posix()
        target = Path(destination_root) / stem
        files = derived_files(result)
        target.mkdir(parents=True, exist_ok=True)
        for name, (data, _content_type) in files.items():
            if all_files or name in DEFAULT_FILES:
                (target / name).write_bytes(data)
        row.status, row.laterality, row.view = "processed", result.laterality, result.view
        row.segmentation_backend = result.segmentation_backend
        row.breast_area_fraction = float(result.breast_area_fraction)
        row.flags = list(result.flags)
        row.magma_png, row.input_npy = f"{stem}/magma.png", f"{stem}/input.npy"
    except Exception as exc:  # noqa: BLE001 - reported per file
        row.reason = f"{type(exc).__name__}: {exc}"
    row.seconds = time.perf_counter() - started
    return row


def write_manifest(rows: Sequence[ManifestRow], destination: Path) -> tuple[Path, Path]:
    """Write ``manifest.csv`` and ``manifest.json`` (rows in source order) under ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda row: row.source)
    csv_path = destination / "manifest.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(MANIFEST_FIELDS))
        writer.writeheader()
        writer.writerows(row.csv_row() for row in ordered)
    json_path = destination / "manifest.json"
    json_path.write_text(json.dumps([row.model_dump() for row in ordered], ensure_ascii=False, indent=1),
                         encoding="utf-8")
    return csv_path, json_path


_Args = tuple[str, str, str, bool]  # source root, destination root, settings JSON, all files


def _run_serial(files: Iterable[str], args: _Args, on_row: Callable[[ManifestRow], None]) -> list[ManifestRow]:
    rows = []
    for relative in files:
        row = prepare_file(args[0], relative, args[1], args[2], args[3])
        rows.append(row)
        on_row(row)
    return rows


def _run_ray(
    files: Sequence[str], args: _Args, on_row: Callable[[ManifestRow], None],
    workers: int, address: str | None,
) -> tuple[list[ManifestRow], int]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))
        task = ray.remote(num_cpus=1, max_retries=1)(prepare_file)
        pending: dict[Any, str] = {}
        rows: list[ManifestRow] = []
        queue = deque(files)
        limit = cpus * _IN_FLIGHT_PER_CPU
        while queue or pending:
            while queue and len(pending) < limit:
                relative = queue.popleft()
                pending[task.remote(args[0], relative, args[1], args[2], args[3])] = relative
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                relative = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker that died (memory, signal) fails one file
                    row = ManifestRow(source=relative, status="failed", reason=f"Ray: {type(exc).__name__}: {exc}"[:500])
                rows.append(row)
                on_row(row)
        return rows, cpus
    finally:
        if started_here:
            ray.shutdown()


def prepare_dataset(
    source: Path,
    destination: Path,
    settings: Settings,
    *,
    workers: int = 2,
    address: str | None = None,
    all_files: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_row: Callable[[ManifestRow], None] | None = None,
) -> PrepSummary:
    """Preprocess every image under ``source`` into ``destination`` and write the manifest.

    ``workers=0`` runs in this process; otherwise on Ray with ``workers`` CPUs (a cluster already
    initialised in this process, or the one at ``address``, is used as it is).
    """
    if not source.is_dir():
        raise FileNotFoundError(f"no existe la carpeta / folder not found: {source}")
    files = discover(source)
    if on_start is not None:
        on_start(len(files))
    destination.mkdir(parents=True, exist_ok=True)
    args: _Args = (str(source.resolve()), str(destination.resolve()), settings.model_dump_json(), all_files)
    report = on_row or (lambda row: None)
    started = time.perf_counter()
    if workers <= 0 and not address:
        rows, mode, used = _run_serial(files, args, report), "serial", 0
    else:
        (rows, used), mode = _run_ray(files, args, report, max(workers, 1), address), "ray"
    summary = PrepSummary(
        source=str(source), destination=str(destination), mode=mode,  # type: ignore[arg-type]
        workers=used, wall_seconds=time.perf_counter() - started, rows=sorted(rows, key=lambda r: r.source),
    )
    write_manifest(summary.rows, destination)
    return summary


__all__ = [
    "ManifestRow",
    "PrepSummary",
    "SkipFile",
    "discover",
    "prepare_dataset",
    "prepare_file",
    "read_source",
    "segmenter_for",
    "write_manifest",
]
