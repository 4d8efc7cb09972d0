"""Resultado de una importación / what an importer returns: manifest rows plus problems."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from mlkit.datasets.manifest import ManifestRow


class DatasetImportError(ValueError):
    """The input cannot be imported at all (missing folder, bad labels file); Spanish / English."""


class ImportResult(BaseModel):
    """Rows ready for :func:`mlkit.datasets.manifest.write_manifest`, and every problem met.

    A problem is something skipped or left unlabelled (one line each, Spanish / English);
    the import itself still succeeded.
    """

    rows: list[ManifestRow] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per view, laterality, malignancy, BI-RADS, density and split ("?" = unknown)."""

        def count(values: list[object]) -> dict[str, int]:
            counter = Counter("?" if v is None else str(v) for v in values)
            return dict(sorted(counter.items()))

        rows = self.rows
        views: dict[tuple[str, str], set[str]] = {}
        for row in rows:
            views.setdefault(row.breast_key, set()).add(row.view)
        return {
            "images": {"total": len(rows), "breasts": len(views),
                       "complete_breasts": sum(1 for v in views.values() if v == {"CC", "MLO"})},
            "view": count([r.view for r in rows]),
            "laterality": count([r.laterality for r in rows]),
            "malignancy": count([r.malignancy for r in rows]),
            "birads": count([r.birads for r in rows]),
            "density": count([r.density for r in rows]),
            "split": count([r.split for r in rows]),
        }


__all__ = ["DatasetImportError", "ImportResult"]
