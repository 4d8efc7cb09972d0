"""Labelled breasts: the images and labels a manifest describes, and the seeded splits.

One breast is one training example: its CC and MLO inputs (``uint8``, 336 x 224 x 3) and
three labels (malignancy 0/1, BI-RADS 0-6, density index 0-3 for A-D; ``-1`` when unknown).
A breast with a single view uses it for both, as the predictor does.

Images stream from disk: :class:`BreastImages` holds the paths of the preprocessed ``.npy``
inputs (DICOM and LJPEG files are preprocessed once into the cache) and reads a batch when it is
indexed, so memory holds one batch, not the data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mlkit.datasets.manifest import BreastRecord, ManifestRow, group_breasts
from services.infer.model import DENSITY_CLASSES
from mlkit.training.images import INPUT_SHAPE, load_view, view_file


class BreastImages:
    """The CC and MLO inputs of ``N`` breasts, read from their ``.npy`` files when indexed.

    Indexing with an integer array or a slice returns ``uint8`` ``len x 2 x 336 x 224 x 3``, like
    the array it stands for; :meth:`subset` (or indexing a :class:`BreastSet`) keeps it lazy.
    """

    def __init__(self, cc: Sequence[Path], mlo: Sequence[Path]) -> None:
        if len(cc) != len(mlo):
            raise ValueError("CC y MLO de distinto largo / CC and MLO lists differ in length")
        self.cc = [Path(p) for p in cc]
        self.mlo = [Path(p) for p in mlo]

    def __len__(self) -> int:
        return len(self.cc)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the array this stands for."""
        return (len(self), 2, *INPUT_SHAPE)

    def _indices(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        return np.arange(len(self))[index].reshape(-1)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        idx = self._indices(index)
        out = np.empty((idx.size, 2, *INPUT_SHAPE), dtype=np.uint8)
        for row, i in enumerate(idx):
            out[row, 0] = np.load(self.cc[i], allow_pickle=False)
            out[row, 1] = np.load(self.mlo[i], allow_pickle=False)
        return out[0] if isinstance(index, (int, np.integer)) else out

    def lesion_maps(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Where the malignant findings are (``len x 2 x 42 x 28``, float32) when every view has its map
        beside it (synthetic data sets write them); None otherwise."""
        from mlkit.training.synthetic import lesion_map_path

        idx = self._indices(index)
        paths = [(lesion_map_path(self.cc[i]), lesion_map_path(self.mlo[i])) for i in idx]
        if not all(a.is_file() and b.is_file() for a, b in paths):
            return None
        return np.stack([[np.load(a), np.load(b)] for a, b in paths]).astype(np.float32)

    def subset(self, index: Sequence[int] | np.ndarray) -> "BreastImages":
        """The breasts at ``index``, still on disk."""
        idx = self._indices(np.asarray(index, dtype=int))
        return BreastImages([self.cc[i] for i in idx], [self.mlo[i] for i in idx])


@dataclass
class BreastSet:
    """Images ``N x 2 x 336 x 224 x 3`` (uint8; CC then MLO; an array or :class:`BreastImages`) and
    labels of ``N`` breasts."""

    images: np.ndarray | BreastImages
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
            images=self.images.subset(idx) if isinstance(self.images, BreastImages) else self.images[idx],
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


def load_breasts(
    rows: Sequence[ManifestRow], cache_dir: Path | None = None, *, progress: bool = True, in_memory: bool | None = None
) -> BreastSet:
    """The breasts of ``rows`` (paths absolute, as :func:`read_manifest` returns them).

    With a ``cache_dir`` (or when every image is already a ``.npy`` file) the images stay on disk and
    stream by batch; DICOM and LJPEG files are preprocessed into the cache first. Without one, or
    with ``in_memory``, the images are read into one array.
    """
    breasts: list[BreastRecord] = [b for b in group_breasts(rows) if b.cc is not None or b.mlo is not None]
    all_npy = all(r.image_format == "npy" for r in rows)
    stream = not in_memory if in_memory is not None else (cache_dir is not None or all_npy)
    cc_paths: list[Path] = []
    mlo_paths: list[Path] = []
    images = None if stream else np.zeros((len(breasts), 2, *INPUT_SHAPE), dtype=np.uint8)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("Preparando imágenes / preparing images", total=len(breasts))
        for i, breast in enumerate(breasts):
            present = [r for r in (breast.cc, breast.mlo) if r is not None]
            if stream:
                files = [view_file(r.image_path, cache_dir) for r in present]
                cc_paths.append(files[0])
                mlo_paths.append(files[-1])
            else:
                assert images is not None
                cc = load_view(breast.cc.image_path, cache_dir) if breast.cc is not None else None
                mlo = load_view(breast.mlo.image_path, cache_dir) if breast.mlo is not None else None
                images[i, 0] = cc if cc is not None else mlo
                images[i, 1] = mlo if mlo is not None else cc
            bar.advance(task)
    return BreastSet(
        images=BreastImages(cc_paths, mlo_paths) if stream else images,  # type: ignore[arg-type]
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


def _carve(data: BreastSet, pool: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the breasts at ``pool`` by patient: ``(kept, carved)`` with ``fraction`` of the patients carved."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("la fracción debe estar entre 0 y 1 / fraction must be within 0..1")
    patients = sorted({data.patient_ids[i] for i in pool})
    if len(patients) < 2:
        raise ValueError("muy pocos pacientes para separar / too few patients to split")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_carved = min(max(1, int(round(fraction * len(patients)))), len(patients) - 1)
    carved_patients = {patients[i] for i in order[:n_carved]}
    carved = np.array([i for i in pool if data.patient_ids[i] in carved_patients], dtype=int)
    kept = np.array([i for i in pool if data.patient_ids[i] not in carved_patients], dtype=int)
    return kept, carved


def split_indices(data: BreastSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices.

    When the manifest has a ``split`` column, ``train`` and ``val`` rows are used as written
    (``test`` rows are kept out); a manifest with ``train`` but no ``val`` rows (CBIS-DDSM, a data
    set converted with only train and test) gets its validation patients carved from ``train``.
    Otherwise patients are shuffled with ``seed`` and ``val_fraction`` of them go to validation, so
    both breasts and every study of one patient land on the same side.
    """
    if any(s is not None for s in data.splits):
        train = np.array([i for i, s in enumerate(data.splits) if s == "train"], dtype=int)
        val = np.array([i for i, s in enumerate(data.splits) if s == "val"], dtype=int)
        if train.size == 0:
            raise ValueError(
                "el manifiesto tiene particiones pero ninguna fila train / the manifest has splits but no train rows"
            )
        if val.size == 0:
            return _carve(data, train, val_fraction, seed)
        return train, val
    return _carve(data, np.arange(len(data)), val_fraction, seed)


def training_splits(
    data: BreastSet, val_fraction: float, calibration_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation (model selection) and calibration (temperature, triage thresholds, the
    out-of-distribution threshold) indices, disjoint by patient.

    The calibration patients are carved from the training side of :func:`split_indices` (with a
    seed of their own), so validation stays what a written split says it is. ``test`` rows are in
    none of them.
    """
    train, val = split_indices(data, val_fraction, seed)
    if calibration_fraction <= 0:
        return train, val, np.zeros(0, dtype=int)
    share = calibration_fraction / max(1.0 - val_fraction, 1e-6) if not any(data.splits) else calibration_fraction
    train, calibration = _carve(data, train, min(share, 0.5), seed + 1)
    return train, val, calibration


__all__ = ["BreastImages", "BreastSet", "load_breasts", "split_indices", "training_splits"]
