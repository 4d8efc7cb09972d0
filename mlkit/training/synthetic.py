"""Write a labelled synthetic data set: preprocessed views (``.npy``) plus a training manifest.

Each study of :mod:`shared.synth_labels` (generator 1) or :mod:`shared.synth_v2` (generator 2) is
drawn, its four views go through the service's preprocessing, and the ``uint8`` model inputs are
saved as
``<folder>/images/<accession>/<laterality>_<view>.npy``. ``<folder>/manifest.csv`` lists them in
the project's manifest format (:mod:`mlkit.datasets.manifest`), so training and
evaluation read synthetic and real data the same way, and epochs never preprocess again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from rich.progress import Progress

from mlkit.datasets.manifest import ManifestRow, read_manifest, write_manifest
from mlkit.training.images import to_bytes
from shared.synth_labels import LabelledStudy, case_seeds, density_category, make_labelled_study

if TYPE_CHECKING:
    from shared.synth_v2 import DrawnView

MANIFEST_NAME: Final[str] = "manifest.csv"


def study_rows(labelled: LabelledStudy, folder: Path) -> list[ManifestRow]:
    """Preprocess the four views of ``labelled``, save them under ``folder`` and return their rows."""
    from shared.imaging.pipeline import preprocess_view

    study = labelled.study
    rows = []
    for view in study.views:
        image = to_bytes(preprocess_view(view.dataset).model_input)
        path = folder / "images" / study.accession_number / f"{view.laterality}_{view.view}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, image)
        label = labelled.label(view.laterality)
        rows.append(
            ManifestRow(
                study_id=study.study_uid,
                patient_id=study.patient_id,
                laterality=view.laterality,
                view=view.view,
                image_path=str(path.relative_to(folder).as_posix()),
                malignancy=label.malignancy,
                birads=label.birads,
                density=label.density,
                finding=label.appearance if label.appearance != "normal" else None,
                source="synthetic",
            )
        )
    return rows


#: Size of the lesion maps (the stride-8 grid of the 336 x 224 input) that supervise where the lesions are.
LESION_MAP_SHAPE: Final[tuple[int, int]] = (42, 28)


def lesion_map_path(image_path: Path) -> Path:
    """Where the lesion map of a model input ``.npy`` lives (beside it)."""
    return image_path.with_name(image_path.stem + "_lesions.npy")


def lesion_map(drawn: "DrawnView") -> np.ndarray:
    """Where the malignant findings of a drawn view fall on the model input's stride-8 grid (float16 0..1).

    The drawn frame is the oriented one (chest wall left); the input is the breast's bounding box resized
    to 336 x 224, so each finding's centre and radius are mapped the same way. Benign findings stay 0.
    """
    rows_idx = np.flatnonzero(drawn.breast.any(axis=1))
    cols_idx = np.flatnonzero(drawn.breast.any(axis=0))
    out = np.zeros(LESION_MAP_SHAPE, dtype=np.float32)
    if rows_idx.size == 0:
        return out.astype(np.float16)
    r0, r1, c0, c1 = rows_idx[0], rows_idx[-1] + 1, cols_idx[0], cols_idx[-1] + 1
    sy, sx = LESION_MAP_SHAPE[0] / (r1 - r0), LESION_MAP_SHAPE[1] / (c1 - c0)
    yy, xx = np.mgrid[0 : LESION_MAP_SHAPE[0], 0 : LESION_MAP_SHAPE[1]].astype(np.float32) + 0.5
    for finding in drawn.findings:
        if not finding.malignant:
            continue
        cy, cx = (finding.center_rc[0] - r0) * sy, (finding.center_rc[1] - c0) * sx
        sigma = max(0.7, 0.6 * finding.radius_px * (sy + sx) / 2.0)
        out = np.maximum(out, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma * sigma)))
    return out.astype(np.float16)


def study_rows_v2(study_seed: int, folder: Path) -> list[ManifestRow]:
    """Draw study ``study_seed`` of the second generator, preprocess its views into ``folder`` and
    return their rows. Density is the category of the dense share the two views of a breast show."""
    from shared import synth_v2
    from shared.imaging.pipeline import preprocess_view
    from shared.synth import STANDARD_VIEWS, study_identity

    case = synth_v2.sample_case(study_seed)
    identity = study_identity(study_seed)
    drawn = {key: synth_v2.draw_view(case, *key) for key in STANDARD_VIEWS}
    rows = []
    for laterality, view in STANDARD_VIEWS:
        stored = synth_v2.make_view(case, laterality, view, identity, drawn=drawn[(laterality, view)])
        image = to_bytes(preprocess_view(stored.dataset).model_input)
        path = folder / "images" / identity.accession_number / f"{laterality}_{view}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, image)
        np.save(lesion_map_path(path), lesion_map(drawn[(laterality, view)]))
        breast = case.breast(laterality)
        dense = (drawn[(laterality, "CC")].dense_fraction + drawn[(laterality, "MLO")].dense_fraction) / 2.0
        rows.append(
            ManifestRow(
                study_id=identity.study_uid,
                patient_id=identity.patient_id,
                laterality=laterality,
                view=view,
                image_path=str(path.relative_to(folder).as_posix()),
                malignancy=int(breast.malignant),
                birads=breast.birads,
                density=density_category(min(max(dense, 0.0), 1.0)),
                finding="+".join(lesion.kind for lesion in breast.lesions) or None,
                source="synthetic",
            )
        )
    return rows


def write_synthetic_dataset(
    folder: str | Path, count: int, seed: int, *, progress: bool = True, generator: int = 1
) -> Path:
    """Write ``count`` labelled studies drawn from data-set ``seed`` into ``folder``; return the manifest.

    An existing manifest with the same number of studies is reused (the content is a pure
    function of ``count``, ``seed`` and ``generator``; a ``.seed`` file records which).
    """
    base = Path(folder)
    manifest = base / MANIFEST_NAME
    stamp = base / ".seed"
    wanted = f"{seed} {count}" + (f" v{generator}" if generator != 1 else "")
    if manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return manifest
    base.mkdir(parents=True, exist_ok=True)
    rows: list[ManifestRow] = []
    seeds = case_seeds(seed, count)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("Estudios sintéticos / synthetic studies", total=count)
        for study_seed in seeds:
            # Each finished study leaves its rows beside its images, so an interrupted run resumes there.
            done = base / "studies" / f"{study_seed}.json"
            if done.is_file():
                rows.extend(ManifestRow.model_validate(r) for r in json.loads(done.read_text(encoding="utf-8")))
            else:
                made = study_rows_v2(study_seed, base) if generator == 2 else study_rows(make_labelled_study(study_seed), base)
                done.parent.mkdir(parents=True, exist_ok=True)
                done.write_text(json.dumps([r.model_dump() for r in made]), encoding="utf-8")
                rows.extend(made)
            bar.advance(task)
    write_manifest(rows, manifest)
    stamp.write_text(wanted + "\n")
    return manifest


def synthetic_manifest_rows(
    folder: str | Path, count: int, seed: int, *, progress: bool = True, generator: int = 1
) -> list[ManifestRow]:
    """Rows of the synthetic data set (written first when missing), with absolute image paths."""
    return read_manifest(write_synthetic_dataset(folder, count, seed, progress=progress, generator=generator))


__all__ = ["LESION_MAP_SHAPE", "MANIFEST_NAME", "lesion_map", "lesion_map_path", "study_rows", "study_rows_v2", "synthetic_manifest_rows", "write_synthetic_dataset"]
