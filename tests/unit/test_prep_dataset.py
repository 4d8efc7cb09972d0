"""`mdd prep-dataset`: a folder of DICOM (and DDSM LJPEG) files preprocessed on Ray or in one process."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from services.cli import app
from mlkit.preprocessing import batch
from shared.imaging.pipeline import preprocess_view
from shared.imaging.segmentation import build_segmenter
from shared.settings import Settings
from shared.synth import make_study, make_view

runner = CliRunner()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster with 2 CPUs for the whole module (the command reuses it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic study (one view MONOCHROME1), a text file without extension and a note."""
    root = tmp_path_factory.mktemp("origen")
    study = make_study(seed=31, rows=256, cols=208)
    study.save(root / "estudio")
    make_view(laterality="L", view="CC", seed=32, rows=256, cols=208, photometric="MONOCHROME1").save(
        root / "otro" / "L_CC_mono1.dcm"
    )
    (root / "LEEME").write_text("no soy DICOM", encoding="utf-8")
    (root / "notas.txt").write_text("ignorado", encoding="utf-8")
    return root


def _manifest(destination: Path) -> dict[str, dict[str, str]]:
    with (destination / "manifest.csv").open(encoding="utf-8") as handle:
        return {row["source"]: row for row in csv.DictReader(handle)}


def _expected_input(path: Path) -> np.ndarray:
    return preprocess_view(pydicom.dcmread(path), build_segmenter(Settings())).model_input


def test_prep_dataset_on_ray_writes_previews_inputs_and_manifest(ray_cluster: None, source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "salida"
    result = runner.invoke(app, ["prep-dataset", str(source), str(destination), "--workers", "2"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "procesados / processed" in result.output and "Ray, 2 CPU" in result.output

    rows = _manifest(destination)
    assert set(rows) == {"estudio/R_CC.dcm", "estudio/L_CC.dcm", "estudio/R_MLO.dcm", "estudio/L_MLO.dcm",
                         "otro/L_CC_mono1.dcm", "LEEME"}
    assert rows["LEEME"]["status"] == "skipped" and "DICOM" in rows["LEEME"]["reason"]
    processed = {name: row for name, row in rows.items() if row["status"] == "processed"}
    assert len(processed) == 5
    for name, row in processed.items():
        model_input = np.load(destination / row["input_npy"])
        assert model_input.shape == (336, 224, 3) and model_input.dtype == np.float32
        # The same per-view function the service runs, whichever process ran it.
        assert np.array_equal(model_input, _expected_input(source / name))
        with Image.open(destination / row["magma_png"]) as preview:
            rgb = np.asarray(preview.convert("RGB")).astype(int)
        assert rgb.shape[0] > 50 and rgb.shape[1] > 50
        assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 10  # coloured (magma), not grey
        assert row["laterality"] in ("R", "L") and row["view"] in ("CC", "MLO")
        assert 0.2 < float(row["breast_area_fraction"]) < 0.9
    assert processed["estudio/R_MLO.dcm"]["view"] == "MLO" and processed["estudio/R_MLO.dcm"]["laterality"] == "R"
    listing = json.loads((destination / "manifest.json").read_text(encoding="utf-8"))
    assert [r["source"] for r in listing] == sorted(rows)


def test_serial_mode_gives_the_same_outputs(source: Path, tmp_path: Path) -> None:
    summary = batch.prepare_dataset(source, tmp_path / "serie", Settings(), workers=0)
    assert summary.mode == "serial" and summary.counts == {"processed": 5, "skipped": 1, "failed": 0}
    row = next(r for r in summary.rows if r.source == "otro/L_CC_mono1.dcm")
    assert row.input_npy is not None
    assert np.array_equal(np.load(tmp_path / "serie" / row.input_npy), _expected_input(source / row.source))


def _ddsm_case(root: Path) -> Path:
    """A DDSM-like case: the .ics and one LEFT_MLO view as a real lossless JPEG (12-bit, bright breast)."""
    from mlkit.datasets.lossless_jpeg import encode_lossless_jpeg

    view = make_view(laterality="L", view="MLO", seed=33, rows=256, cols=208)
    folder = root / "ddsm" / "caso_0001"
    folder.mkdir(parents=True)
    (folder / "A_0001_1.LEFT_MLO.LJPEG").write_bytes(encode_lossless_jpeg(view.dataset.pixel_array, precision=12))
    (folder / "A-0001-1.ics").write_text(
        "ics_version 1.0\nfilename A-0001-1\nDENSITY 2\nSEQUENCE\n"
        "LEFT_MLO LINES 256 PIXELS_PER_LINE 208 BITS_PER_PIXEL 12 RESOLUTION 50 NON_OVERLAY\n",
        encoding="utf-8",
    )
    return root / "ddsm"


def test_ljpeg_files_go_through_the_ddsm_reader(tmp_path: Path) -> None:
    source = _ddsm_case(tmp_path)
    summary = batch.prepare_dataset(source, tmp_path / "con", Settings(), workers=0)
    (row,) = summary.rows  # the .ics is not an image
    assert row.status == "processed", row.reason
    assert (row.laterality, row.view) == ("L", "MLO")
    assert row.breast_area_fraction is not None and 0.3 < row.breast_area_fraction < 0.9
    assert np.load(tmp_path / "con" / "caso_0001" / "A_0001_1.LEFT_MLO" / "input.npy").shape == (336, 224, 3)


def test_ljpeg_files_are_skipped_when_the_decoder_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _ddsm_case(tmp_path)
    monkeypatch.setattr(batch, "LJPEG_DECODER", "mlkit.datasets.no_existe:read_ljpeg_dataset")
    result = runner.invoke(app, ["prep-dataset", str(source), str(tmp_path / "sin"), "--workers", "0"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (row,) = _manifest(tmp_path / "sin").values()
    assert row["status"] == "skipped" and "LJPEG" in row["reason"] and "no_existe" in row["reason"]
    assert "omitidos / skipped" in result.output and "LJPEG" in result.output


def test_a_broken_file_fails_with_its_reason_and_a_non_zero_exit(tmp_path: Path) -> None:
    good = make_view(laterality="R", view="CC", seed=34, rows=256, cols=208)
    good.save(tmp_path / "src" / "bien.dcm")
    broken = pydicom.dcmread(io.BytesIO(good.to_bytes()))
    broken.PixelData = broken.PixelData[:1000]
    broken.save_as(tmp_path / "src" / "roto.dcm", enforce_file_format=True)

    result = runner.invoke(app, ["prep-dataset", str(tmp_path / "src"), str(tmp_path / "dst"), "--workers", "0"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "fallidos / failed" in result.output and "roto.dcm" in result.output
    rows = _manifest(tmp_path / "dst")
    assert rows["bien.dcm"]["status"] == "processed"
    assert rows["roto.dcm"]["status"] == "failed" and rows["roto.dcm"]["reason"]
    assert not (tmp_path / "dst" / "roto").exists()


def test_missing_source_folder_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prep-dataset", str(tmp_path / "no_existe"), str(tmp_path / "dst")])
    assert result.exit_code == 2 and "no_existe" in result.output
