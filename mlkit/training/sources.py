"""Where labelled breasts come from: a training manifest, or synthetic studies drawn on the fly."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from mlkit.datasets.manifest import read_manifest
from mlkit.training.data import BreastSet, load_breasts
from mlkit.training.synthetic import synthetic_manifest_rows


class DataSource(BaseModel):
    """A manifest (CSV or JSON Lines), or ``synthetic`` studies from data-set ``seed``."""

    manifest: Path | None = None
    synthetic: int | None = None
    seed: int = 0
    generator: int = Field(2, ge=1, le=2, description="Versión del generador sintético / synthetic generator version")
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
            module = "shared/synth_v2.py" if self.generator == 2 else "shared/synth_labels.py"
            return (
                f"Fantomas sintéticos etiquetados ({module}, generador {self.generator}): {self.synthetic} estudios "
                f"de cuatro vistas, semilla de datos {self.seed} / labelled synthetic phantoms (generator "
                f"{self.generator}): {self.synthetic} four-view studies, data seed {self.seed}"
            )
        assert self.manifest is not None
        part = f", partición / split {self.split}" if self.split else ""
        return f"Manifiesto / manifest {self.manifest.name}{part}"

    def synthetic_folder(self) -> Path:
        """Folder of the synthetic data set of this source (inside the cache)."""
        version = f"v{self.generator}-" if self.generator != 1 else ""
        return self.cache_dir / f"synthetic-{version}{self.seed}-{self.synthetic}"

    def load(self, *, progress: bool = True) -> BreastSet:
        """Read (and, for synthetic data, first write) the labelled breasts."""
        if self.synthetic is not None:
            rows = synthetic_manifest_rows(
                self.synthetic_folder(), self.synthetic, self.seed, progress=progress, generator=self.generator
            )
        else:
            assert self.manifest is not None
            rows = read_manifest(self.manifest)
        if self.split is not None:
            rows = [r for r in rows if r.split == self.split]
            if not rows:
                raise ValueError(f"no hay filas con split={self.split} / no rows with split={self.split}")
        return load_breasts(rows, self.cache_dir / "dicom", progress=progress)


__all__ = ["DataSource"]
