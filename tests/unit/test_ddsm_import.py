"""DDSM: .ics and .OVERLAY parsing, .LJPEG decoding (exact pixels) and the import to a manifest."""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.cli import app
from mlkit.datasets.ddsm import (
    import_ddsm,
    parse_ics,
    parse_overlay,
    read_ljpeg,
    read_ljpeg_dataset,
)
from mlkit.datasets.lossless_jpeg import LosslessJpegError, encode_lossless_jpeg
from mlkit.datasets.manifest import read_manifest
from shared.imaging.pipeline import preprocess_view

SHAPES = {"LEFT_CC": (48, 36), "LEFT_MLO": (50, 34), "RIGHT_CC": (46, 38), "RIGHT_MLO": (52, 32)}

MALIGNANT_MASS = """TOTAL_ABNORMALITIES 2
ABNORMALITY 1
LESION_TYPE MASS SHAPE IRREGULAR MARGINS SPICULATED
ASSESSMENT 5
SUBTLETY 4
PATHOLOGY MALIGNANT
TOTAL_OUTLINES 1
BOUNDARY
1583 2163 0 0 0 1 1 2 2 #
ABNORMALITY 2
LESION_TYPE CALCIFICATION TYPE PUNCTATE DISTRIBUTION CLUSTERED
ASSESSMENT 3
SUBTLETY 2
PATHOLOGY BENIGN
TOTAL_OUTLINES 1
BOUNDARY
900 1200 4 4 4 #
"""


def _film(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.clip(2000 + 900 * np.sin(y / 6.0) * np.cos(x / 5.0) + rng.normal(0, 40, shape), 0, 4095).astype(np.uint16)


def write_case(folder: Path, name: str = "A-1465-1", overlays: dict[str, str] | None = None,
               density: str = "3", swapped: str | None = None) -> dict[str, np.ndarray]:
    """A DDSM case folder: .ics, four .LJPEG (one with transposed header dims if asked), overlays."""
    overlays = {} if overlays is None else overlays
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    lines = [
        "ics_version 1.0", f"filename {name}", "DATE_OF_STUDY 2 7 1995", "PATIENT_AGE 62",
        f"DENSITY {density}", "DIGITIZER LUMISYS LASER", "SELECTED", "SEQUENCE",
    ]
    images = {}
    for index, (view, shape) in enumerate(SHAPES.items()):
        flag = "OVERLAY" if view in overlays else "NON_OVERLAY"
        lines.append(f"{view} LINES {shape[0]} PIXELS_PER_LINE {shape[1]} BITS_PER_PIXEL 12 RESOLUTION 50 {flag}")
        images[view] = _film(shape, seed=index)
        header = (shape[1], shape[0]) if view == swapped else None
        data = encode_lossless_jpeg(images[view], precision=12, header_shape=header)
        (folder / f"{stem}.{view}.LJPEG").write_bytes(data)
        if view in overlays:
            (folder / f"{stem}.{view}.OVERLAY").write_text(overlays[view])
    (folder / f"{name}.ics").write_text("\n".join(lines) + "\n")
    return images


def test_ics_and_overlay_are_parsed(tmp_path: Path) -> None:
    write_case(tmp_path / "case", overlays={"LEFT_CC": MALIGNANT_MASS})
    info = parse_ics(tmp_path / "case" / "A-1465-1.ics")
    assert (info.filename, info.case_id, info.density, info.patient_age) == ("A-1465-1", "A-1465", "C", 62)
    assert info.digitizer == "LUMISYS LASER"
    left_cc = info.views["LEFT_CC"]
    assert (left_cc.shape, left_cc.bits_per_pixel, left_cc.resolution_um, left_cc.overlay) == ((48, 36), 12, 50.0, True)
    assert info.views["RIGHT_MLO"].overlay is False
    found = parse_overlay(MALIGNANT_MASS)
    assert [(a.lesion_types, a.assessment, a.pathology) for a in found] == [
        (["MASS"], 5, "MALIGNANT"),
        (["CALCIFICATION"], 3, "BENIGN"),
    ]


def test_read_ljpeg_returns_the_exact_pixels_even_with_a_transposed_header(tmp_path: Path) -> None:
    images = write_case(tmp_path / "case", swapped="LEFT_MLO")
    for view, expected in images.items():
        decoded = read_ljpeg(tmp_path / "case" / f"A_1465_1.{view}.LJPEG")
        assert decoded.dtype == np.uint16
        np.testing.assert_array_equal(decoded, expected)


def test_read_ljpeg_refuses_a_file_that_does_not_fit_its_ics(tmp_path: Path) -> None:
    write_case(tmp_path / "case")
    ics = tmp_path / "case" / "A-1465-1.ics"
    ics.write_text(ics.read_text().replace("LEFT_CC LINES 48", "LEFT_CC LINES 47"))
    with pytest.raises(LosslessJpegError, match=".ics"):
        read_ljpeg(tmp_path / "case" / "A_1465_1.LEFT_CC.LJPEG")


def test_an_ljpeg_goes_through_the_preprocessing_pipeline(tmp_path: Path) -> None:
    write_case(tmp_path / "case")
    ds = read_ljpeg_dataset(tmp_path / "case" / "A_1465_1.RIGHT_MLO.LJPEG")
    assert (ds.ImageLaterality, ds.ViewPosition, ds.Rows, ds.Columns) == ("R", "MLO", 52, 32)
    np.testing.assert_array_equal(ds.pixel_array, _film(SHAPES["RIGHT_MLO"], seed=3))
    view = preprocess_view(ds)
    assert view.model_input.shape == (336, 224, 3)


def test_import_labels_each_view_from_its_overlay_and_the_case_density(tmp_path: Path) -> None:
    write_case(tmp_path / "cancers" / "case1465", overlays={"LEFT_CC": MALIGNANT_MASS, "LEFT_MLO": MALIGNANT_MASS})
    write_case(tmp_path / "normals" / "case0003", name="C-0003-1", density="1")
    result = import_ddsm(tmp_path)
    rows = {(r.study_id, r.laterality, r.view): r for r in result.rows}
    assert len(rows) == 8
    left_cc = rows[("A-1465-1", "L", "CC")]
    assert (left_cc.malignancy, left_cc.birads, left_cc.density, left_cc.finding) == (1, 5, "C", "calcification+mass")
    assert (left_cc.patient_id, left_cc.source, left_cc.image_format) == ("A-1465", "ddsm", "ljpeg")
    # The other breast of the cancer case has no marked lesion: benign label, BI-RADS unknown.
    right_cc = rows[("A-1465-1", "R", "CC")]
    assert (right_cc.malignancy, right_cc.birads) == (0, None)
    # A normal case (no overlay at all): negative, BI-RADS 1, fatty.
    normal = rows[("C-0003-1", "R", "MLO")]
    assert (normal.malignancy, normal.birads, normal.density) == (0, 1, "A")
    assert result.problems == []


def test_missing_images_and_overlays_are_reported(tmp_path: Path) -> None:
    write_case(tmp_path / "case", overlays={"LEFT_CC": MALIGNANT_MASS}, density="0")
    (tmp_path / "case" / "A_1465_1.RIGHT_CC.LJPEG").unlink()
    (tmp_path / "case" / "A_1465_1.LEFT_CC.OVERLAY").unlink()
    result = import_ddsm(tmp_path)
    assert len(result.rows) == 3
    text = "\n".join(result.problems)
    assert "RIGHT_CC" in text and ".OVERLAY" in text and "densi" in text
    left_cc = next(r for r in result.rows if (r.laterality, r.view) == ("L", "CC"))
    assert left_cc.malignancy is None


def test_cli_imports_ddsm_and_explains_bad_input(tmp_path: Path) -> None:
    write_case(tmp_path / "ddsm" / "case", overlays={"LEFT_CC": MALIGNANT_MASS})
    out = tmp_path / "manifests" / "ddsm.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["import-dataset", "--format", "ddsm", str(tmp_path / "ddsm"), str(out)])
    assert result.exit_code == 0, result.output
    assert "4" in result.output and "malignancy" in result.output
    rows = read_manifest(out)
    assert {Path(r.image_path).name for r in rows} == {f"A_1465_1.{v}.LJPEG" for v in SHAPES}
    assert all(Path(r.image_path).is_file() for r in rows)

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = runner.invoke(app, ["import-dataset", "--format", "ddsm", str(empty), str(out)])
    assert refused.exit_code != 0
    assert ".ics" in refused.output
