"""Where labelled breasts come from: a training manifest, or synthetic studies drawn on the fly."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, model_validator

from mlkit.datasets.manifest import read_manifest
from mlkit.training.data import BreastSet, load_breasts
from mlkit.training.synthetic import synthetic_manifest_rows


class DataSource(BaseModel):
    """A manifest (CSV or JSON Lines), or ``synthetic`` studies from data-set ``seed``."""

    manifest: Path | None = None
    synthetic: int | None = None
    seed: int = 0
    split: str | None = None
    cache_dir: Path = Path("var/training-cache")

    @model_validator(mode="after")
    def _one_source(self) -> "DataSource":
        if (self.manifest is None) == (self.synthetic is None):
            raise ValueError("indique --manifest o --synthetic (uno) / give either --manifest or --synthetic")
        if self.synthetic is not None and self.synthetic < 1:
            raise ValueError("--synthetic debe ser ≥ 1 / must be at least 1")
        return self

    def describe(self) -> str:
        """One bilingual line for checkpoints and model cards (no local paths)."""
        if self.synthetic is not None:
            return (
                f"Fantomas sintéticos etiquetados (shared/synth_labels.py): {self.synthetic} estudios de cuatro "
                f"vistas, semilla de datos {self.seed} / labelled synthetic phantoms: {self.synthetic} four-view "
                f"studies, data seed {self.seed}"
            )
        assert self.manifest is not None
        part = f", partición / split {self.split}" if self.split else ""
        return f"Manifiesto / manifest {self.manifest.name}{part}"

    def synthetic_folder(self) -> Path:
        """Folder of the synthetic data set of this source (inside the cache)."""
        return self.cache_dir / f"synthetic-{self.seed}-{self.synthetic}"

    def load(self, *, progress: bool = True) -> BreastSet:
        """Read (and, for synthetic data, first write) the labelled breasts."""
        if self.synthetic is not None:
            rows = synthetic_manifest_rows(self.synthetic_folder(), self.synthetic, self.seed, progress=progress)
        else:
            assert self.manifest is not None
            rows = read_manifest(self.manifest)
        if self.split is not None:
            rows = [r for r in rows if r.split == self.split]
            if not rows:
                raise ValueError(f"no hay filas con split={self.split} / no rows with split={self.split}")
        return load_breasts(rows, self.cache_dir / "dicom", progress=progress)


__all__ = ["DataSource"]
