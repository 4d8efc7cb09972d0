"""Labelled breasts in memory: the images and labels a manifest describes, and the seeded split.

One breast is one training example: its CC and MLO inputs (``uint8``, 336 x 224 x 3) and
three labels (malignancy 0/1, BI-RADS 0-6, density index 0-3 for A-D; ``-1`` when unknown).
A breast with a single view uses it for both, as the predictor does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mlkit.datasets.manifest import BreastRecord, ManifestRow, group_breasts
from services.infer.model import DENSITY_CLASSES
from mlkit.training.images import INPUT_SHAPE, load_view


@dataclass
class BreastSet:
    """Images ``N x 2 x 336 x 224 x 3`` (uint8; CC then MLO) and labels of ``N`` breasts."""

    images: np.ndarray
    malignancy: np.ndarray
    birads: np.ndarray
    density: np.ndarray
    study_ids: list[str]
    patient_ids: list[str]
    lateralities: list[str]
    splits: list[str | None]

    def __len__(self) -> int:
        return int(self.malignancy.size)

    def subset(self, index: Sequence[int] | np.ndarray) -> "BreastSet":
        """The breasts at ``index`` (a copy of the labels, a view of the images when possible)."""
        idx = np.asarray(index, dtype=int)
        return BreastSet(
            images=self.images[idx],
            malignancy=self.malignancy[idx],
            birads=self.birads[idx],
            density=self.density[idx],
            study_ids=[self.study_ids[i] for i in idx],
            patient_ids=[self.patient_ids[i] for i in idx],
            lateralities=[self.lateralities[i] for i in idx],
            splits=[self.splits[i] for i in idx],
        )

    def summary(self) -> dict[str, int]:
        """Counts for reports: breasts, studies, malignant, and per density category."""
        out = {
            "breasts": len(self),
            "studies": len(set(self.study_ids)),
            "malignant": int((self.malignancy == 1).sum()),
            "benign_or_normal": int((self.malignancy == 0).sum()),
        }
        for i, name in enumerate(DENSITY_CLASSES):
            out[f"density_{name}"] = int((self.density == i).sum())
        return out


def _label(value: int | None) -> int:
    return -1 if value is None else int(value)


def load_breasts(rows: Sequence[ManifestRow], cache_dir: Path | None = None, *, progress: bool = True) -> BreastSet:
    """Load every breast of ``rows`` (paths absolute, as :func:`read_manifest` returns them)."""
    breasts: list[BreastRecord] = [b for b in group_breasts(rows) if b.cc is not None or b.mlo is not None]
    images = np.zeros((len(breasts), 2, *INPUT_SHAPE), dtype=np.uint8)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("Cargando imágenes / loading images", total=len(breasts))
        for i, breast in enumerate(breasts):
            cc = load_view(breast.cc.image_path, cache_dir) if breast.cc is not None else None
            mlo = load_view(breast.mlo.image_path, cache_dir) if breast.mlo is not None else None
            images[i, 0] = cc if cc is not None else mlo
            images[i, 1] = mlo if mlo is not None else cc
            bar.advance(task)
    return BreastSet(
        images=images,
        malignancy=np.array([_label(b.malignancy) for b in breasts], dtype=np.int64),
        birads=np.array([_label(b.birads) for b in breasts], dtype=np.int64),
        density=np.array(
            [DENSITY_CLASSES.index(b.density) if b.density is not None else -1 for b in breasts], dtype=np.int64
        ),
        study_ids=[b.study_id for b in breasts],
        patient_ids=[b.patient_id for b in breasts],
        lateralities=[b.laterality for b in breasts],
        splits=[b.split for b in breasts],
    )


def split_indices(data: BreastSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices.

    When the manifest has a ``split`` column, ``train`` and ``val`` rows are used as written
    (``test`` rows are kept out). Otherwise patients are shuffled with ``seed`` and
    ``val_fraction`` of them go to validation, so both breasts and every study of one patient
    land on the same side.
    """
    if any(s is not None for s in data.splits):
        train = np.array([i for i, s in enumerate(data.splits) if s == "train"], dtype=int)
        val = np.array([i for i, s in enumerate(data.splits) if s == "val"], dtype=int)
        if train.size == 0 or val.size == 0:
            raise ValueError(
                "el manifiesto tiene particiones pero faltan filas train o val / "
                "the manifest has splits but no train or no val rows"
            )
        return train, val
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction debe estar entre 0 y 1 / must be within 0..1")
    patients = sorted(set(data.patient_ids))
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = max(1, int(round(val_fraction * len(patients))))
    if n_val >= len(patients):
        raise ValueError("muy pocos pacientes para separar / too few patients to split")
    val_patients = {patients[i] for i in order[:n_val]}
    val = np.array([i for i, p in enumerate(data.patient_ids) if p in val_patients], dtype=int)
    train = np.array([i for i, p in enumerate(data.patient_ids) if p not in val_patients], dtype=int)
    return train, val


__all__ = ["BreastSet", "load_breasts", "split_indices"]
