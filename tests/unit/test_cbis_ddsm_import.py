"""CBIS-DDSM: description CSVs + DICOM tree -> one manifest row per full mammogram."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app
from mlkit.datasets.cbis_ddsm import import_cbis_ddsm
from mlkit.datasets.manifest import read_manifest
from shared.synth import make_view

MASS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]
CALC_COLUMNS = [
    "patient_id", "breast density", "left or right breast", "image view", "abnormality id",
    "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]


def _csv_path(folder: str, n: int) -> str:
    return f"{folder}/1.3.6.1.4.1.9590.100.1.2.{n}1/1.3.6.1.4.1.9590.100.1.2.{n}2/000000.dcm"


def _dicom(path: Path, folder: str, series_uid: str, side: str, view: str, seed: int) -> None:
    image = make_view(laterality=side, view=view, rows=96, cols=80, seed=seed)  # type: ignore[arg-type]
    image.dataset.PatientID = folder
    image.dataset.SeriesInstanceUID = series_uid
    image.save(path)


def _rows(kind: str, density: str, side: str, view: str, assessment: str, pathology: str, image: str) -> dict:
    return {
        "patient_id": "P_" + image.split("_P_")[1][:5],
        "breast_density": density, "breast density": density, "left or right breast": side,
        "image view": view, "abnormality id": "1", "abnormality type": kind, "assessment": assessment,
        "pathology": pathology, "subtlety": "3", "image file path": image,
        "cropped image file path": image.replace("000000", "000001"), "ROI mask file path": image,
    }


def write_cbis(root: Path) -> None:
    """A tiny CBIS-DDSM: CSV paths that exist, that differ from the tree, and that are missing."""
    p1_cc = _csv_path("Mass-Training_P_00001_LEFT_CC", 1)
    p1_mlo = _csv_path("Mass-Training_P_00001_LEFT_MLO", 2)
    p2_cc = _csv_path("Calc-Test_P_00002_RIGHT_CC", 3)
    p3_mlo = _csv_path("Calc-Test_P_00003_RIGHT_MLO", 4)
    p4_cc = _csv_path("Mass-Training_P_00004_LEFT_CC", 5)
    p4_mlo = _csv_path("Calc-Test_P_00004_LEFT_MLO", 6)
    # As the CSV says.
    _dicom(root / p1_cc, "Mass-Training_P_00001_LEFT_CC", "1.3.6.1.4.1.9590.100.1.2.12", "L", "CC", 1)
    # As a download tree names it: found by SeriesInstanceUID.
    _dicom(root / "CBIS-DDSM/Mass-Training_P_00001_LEFT_MLO/07-20-2016-DDSM-1/1.000000-full mammogram images-2/1-1.dcm",
           "Mass-Training_P_00001_LEFT_MLO", "1.3.6.1.4.1.9590.100.1.2.22", "L", "MLO", 2)
    # Another series UID, but the folder name (PatientID) is unique: found by it.
    _dicom(root / "CBIS-DDSM/Calc-Test_P_00002_RIGHT_CC/x/1-1.dcm", "Calc-Test_P_00002_RIGHT_CC", "9.9.9", "R", "CC", 3)
    _dicom(root / p4_cc, "Mass-Training_P_00004_LEFT_CC", "1.3.6.1.4.1.9590.100.1.2.52", "L", "CC", 4)
    _dicom(root / p4_mlo, "Calc-Test_P_00004_LEFT_MLO", "1.3.6.1.4.1.9590.100.1.2.62", "L", "MLO", 5)
    mass = [
        _rows("mass", "3", "LEFT", "CC", "3", "BENIGN", p1_cc),
        _rows("mass", "3", "LEFT", "CC", "4", "MALIGNANT", p1_cc),
        _rows("mass", "3", "LEFT", "MLO", "2", "BENIGN_WITHOUT_CALLBACK", p1_mlo),
        _rows("mass", "2", "LEFT", "CC", "4", "BENIGN", p4_cc),
        _rows("mass", "2", "LEFT", "XX", "4", "BENIGN", p4_cc),
    ]
    calc = [
        _rows("calcification", "4", "RIGHT", "CC", "4", "BENIGN", p2_cc),
        _rows("calcification", "4", "RIGHT", "MLO", "5", "MALIGNANT", p3_mlo),
        _rows("calcification", "2", "LEFT", "MLO", "4", "MALIGNANT", p4_mlo),
    ]
    for name, columns, rows in (
        ("mass_case_description_train_set.csv", MASS_COLUMNS, mass),
        ("calc_case_description_test_set.csv", CALC_COLUMNS, calc),
    ):
        with (root / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def test_each_image_gets_its_worst_pathology_birads_density_and_split(tmp_path: Path) -> None:
    write_cbis(tmp_path)
    result = import_cbis_ddsm(tmp_path)
    rows = {(r.patient_id, r.laterality, r.view): r for r in result.rows}
    assert set(rows) == {("P_00001", "L", "CC"), ("P_00001", "L", "MLO"), ("P_00002", "R", "CC"),
                         ("P_00004", "L", "CC"), ("P_00004", "L", "MLO")}
    cc = rows[("P_00001", "L", "CC")]
    assert (cc.malignancy, cc.birads, cc.density, cc.finding, cc.split) == (1, 4, "C", "mass", "train")
    mlo = rows[("P_00001", "L", "MLO")]
    assert (mlo.malignancy, mlo.birads, mlo.study_id) == (0, 2, "P_00001")
    assert mlo.image_path.endswith("1-1.dcm")
    calc = rows[("P_00002", "R", "CC")]
    assert (calc.malignancy, calc.density, calc.finding, calc.split) == (0, "D", "calcification", "test")
    # P_00004 is in the mass train set and the calc test set: the whole patient goes to test.
    assert {rows[("P_00004", "L", v)].split for v in ("CC", "MLO")} == {"test"}
    assert all(r.source == "cbis_ddsm" and Path(r.image_path).is_file() for r in result.rows)
    problems = "\n".join(result.problems)
    assert "P_00003" in problems and "XX" in problems and "P_00004" in problems


def test_cli_writes_a_csv_manifest_and_refuses_a_folder_without_csvs(tmp_path: Path) -> None:
    write_cbis(tmp_path / "cbis")
    out = tmp_path / "cbis.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["import-dataset", "--format", "cbis-ddsm", str(tmp_path / "cbis"), str(out)])
    assert result.exit_code == 0, result.output
    assert "P_00003" in result.output
    assert len(read_manifest(out)) == 5
    (tmp_path / "nothing").mkdir()
    refused = runner.invoke(app, ["import-dataset", "--format", "cbis-ddsm", str(tmp_path / "nothing"), str(out)])
    assert refused.exit_code != 0 and "CSV" in refused.output
