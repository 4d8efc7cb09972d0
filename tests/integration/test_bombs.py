"""Bombs at the real front doors: each refused with its status and reason, and the service keeps serving."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx

from shared.synth import SyntheticStudy
from tests.corpus import zip_bomb


async def test_a_zip_bomb_is_refused_with_413_and_a_good_zip_is_ingested_after(ingest_web, four_view_study: SyntheticStudy) -> None:  # type: ignore[no-untyped-def]
    _, base = ingest_web
    async with httpx.AsyncClient(timeout=60) as client:
        refused = await client.post(f"{base}/uploads", content=zip_bomb(), headers={"Content-Type": "application/zip"})
        assert refused.status_code == 413
        assert "bomba ZIP" in refused.json()["detail"] and "ZIP bomb" in refused.json()["detail"]

        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for view in four_view_study.views:
                bundle.writestr(f"estudio/{view.dataset.SOPInstanceUID}.dcm", view.to_bytes())
        report = (await client.post(f"{base}/uploads", content=archive.getvalue(), headers={"Content-Type": "application/zip"})).json()
    assert report["stored"] == 4 and report["failed"] == 0
