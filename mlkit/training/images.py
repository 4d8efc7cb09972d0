"""Model inputs of one view, from the files a training manifest can name.

Every DICOM goes through :func:`shared.imaging.pipeline.preprocess_view`, the function the
preprocess service runs, so training and serving see the same pixels. Inputs are kept as
``uint8`` (336 x 224 x 3): the service's float input is an 8-bit RGB image divided by 255, so
the byte form is lossless and four times smaller. ``.npy`` files may hold either form.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

import numpy as np

INPUT_SHAPE: Final[tuple[int, int, int]] = (336, 224, 3)
_SCALE: Final[np.float32] = np.float32(1.0 / 255.0)


def to_bytes(model_input: np.ndarray) -> np.ndarray:
    """The ``uint8`` form of a 0..1 float model input (exact for the service's inputs)."""
    if model_input.dtype == np.uint8:
        return model_input
    return np.rint(np.clip(model_input, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    """The float32 0..1 model input of a ``uint8`` image, computed as the service computes it."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * _SCALE
    return image.astype(np.float32, copy=False)


def _check(image: np.ndarray, path: Path) -> np.ndarray:
    if image.shape != INPUT_SHAPE:
        raise ValueError(f"{path}: forma {image.shape}, se esperaba / expected {INPUT_SHAPE}")
    return image


def preprocess_dicom(path: Path) -> np.ndarray:
    """Read a DICOM file and return its ``uint8`` model input (the service's preprocessing)."""
    import pydicom

    from shared.imaging.pipeline import preprocess_view

    return to_bytes(preprocess_view(pydicom.dcmread(path)).model_input)


def _preprocess_ljpeg(path: Path) -> np.ndarray:
    """DDSM ``.LJPEG`` decoded by the data-set importers, then the same preprocessing."""
    from mlkit.datasets.ddsm import read_ljpeg_dataset
    from shared.imaging.pipeline import preprocess_view

    return to_bytes(preprocess_view(read_ljpeg_dataset(path)).model_input)


def _cache_name(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".npy"


def view_file(path: str | Path, cache_dir: Path | None) -> Path:
    """The ``.npy`` file holding the ``uint8`` model input of an image file, preprocessed into
    ``cache_dir`` first for DICOM and LJPEG files (which then need a cache)."""
    source = Path(path)
    if source.suffix.lower() == ".npy":
        return source
    if cache_dir is None:
        raise ValueError(f"{source}: hace falta una caché para preprocesar / a cache folder is needed")
    cached = cache_dir / _cache_name(source)
    if not cached.is_file():
        load_view(source, cache_dir)
    return cached


def load_view(path: str | Path, cache_dir: Path | None = None) -> np.ndarray:
    """The ``uint8`` model input of one image file (``.npy``, DICOM or ``.LJPEG``).

    DICOM and LJPEG results are cached in ``cache_dir`` (keyed by path, size and modification
    time), so a second epoch or a second run does not preprocess again.
    """
    source = Path(path)
    if source.suffix.lower() == ".npy":
        return to_bytes(_check(np.load(source, allow_pickle=False), source))
    cached = cache_dir / _cache_name(source) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return _check(np.load(cached, allow_pickle=False), cached)
    image = _preprocess_ljpeg(source) if source.suffix.lower() == ".ljpeg" else preprocess_dicom(source)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp.npy")
        np.save(tmp, image)
        os.replace(tmp, cached)
    return image


__all__ = ["INPUT_SHAPE", "load_view", "preprocess_dicom", "to_bytes", "to_float", "view_file"]
