"""Importers of VinDr-Mammo, CMMD, INbreast and the RSNA screening data set, each on small files laid
out exactly as the data set ships (folders, file names, CSV or Excel columns), and `mdd train` end to end
on each manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from mlkit.datasets.cmmd import import_cmmd
from mlkit.datasets.inbreast import import_inbreast
from mlkit.datasets.manifest import group_breasts, read_manifest
from mlkit.datasets.rsna import import_rsna
from mlkit.datasets.vindr import import_vindr
from services.cli import app
from shared.synth import make_view

PATIENTS = 6
VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def _image(seed: int, laterality: str, view: str, *, finding: bool, view_position: bool = True) -> Dataset:
    ds = make_view(laterality=laterality, view=view, seed=seed, finding="mass" if finding else None).dataset  # type: ignore[arg-type]
    if not view_position:  # only the View Code Sequence says the view (as CMMD's files do)
        del ds.ViewPosition
    return ds


def _malignant(patient: int, laterality: str) -> bool:
    return patient % 2 == 0 and laterality == "L"


def _write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def vindr_tree(root: Path) -> Path:
    rows = []
    for p in range(PATIENTS):
        study = f"{p:032x}"
        for k, (lat, view) in enumerate(VIEWS):
            image = f"{p:08x}{k:024x}"
            ds = _image(100 + p, lat, view, finding=_malignant(p, lat))
            path = root / "images" / study / f"{image}.dicom"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            birads = "BI-RADS 5" if _malignant(p, lat) else "BI-RADS 1"
            rows.append([study, f"{p:032x}s", image, lat, view, ds.Rows, ds.Columns, birads, "DENSITY C",
                         "test" if p == PATIENTS - 1 else "training"])
    _write_csv(root / "breast-level_annotations.csv",
               ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                "breast_birads", "breast_density", "split"], rows)
    (root / "metadata.csv").write_text("Series Instance UID,SOP Instance UID\n")
    return root


def cmmd_tree(root: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    for p in range(PATIENTS):
        patient = f"D1-{p + 1:04d}"
        series = root / "CMMD" / patient / "07-18-2010-NA-NA-79377" / "1.000000-NA-70244"
        series.mkdir(parents=True)
        for k, (lat, view) in enumerate(VIEWS):
            _image(200 + p, lat, view, finding=_malignant(p, lat), view_position=False).save_as(
                series / f"1-{k + 1}.dcm", enforce_file_format=True
            )
        # CMMD lists the breasts with a lesion: the left (malignant for even patients), the right benign.
        sheet.append([patient, "L", 50 + p, 1, "mass", "Malignant" if p % 2 == 0 else "Benign", "NA"])
        sheet.append([patient, "R", 50 + p, 1, "calcification", "Benign", ""])
    book.save(root / "CMMD_clinicaldata_revision.xlsx")
    return root


def inbreast_tree(root: Path) -> Path:
    release = root / "INbreast Release 1.0"
    (release / "AllDICOMs").mkdir(parents=True)
    rows = []
    for p in range(PATIENTS):
        patient = f"{p:04x}a1b2c3d4e5f6"
        for k, (lat, view) in enumerate(VIEWS):
            file_name = f"{20586900 + 10 * p + k}"
            shown = "ML" if view == "MLO" else view
            _image(300 + p, lat, view, finding=_malignant(p, lat)).save_as(
                release / "AllDICOMs" / f"{file_name}_{patient}_MG_{lat}_{shown}_ANON.dcm", enforce_file_format=True
            )
            rows.append(["removed", "removed", lat, shown, "200301", file_name, 3, "4c" if _malignant(p, lat) else "2"])
    _write_csv(release / "INbreast.csv",
               ["Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name", "ACR", "Bi-Rads"],
               rows, delimiter=";")
    return root


def rsna_tree(root: Path) -> Path:
    rows = []
    for p in range(PATIENTS):
        patient = 10006 + p
        for k, (lat, view) in enumerate((*VIEWS, ("L", "AT"))):
            image = 462822612 + 100 * p + k
            ds = _image(400 + p, lat, view if view != "AT" else "CC", finding=_malignant(p, lat))
            path = root / "train_images" / str(patient) / f"{image}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            cancer = int(_malignant(p, lat))
            rows.append([2, patient, image, lat, view, 61, cancer, cancer, cancer, "" if cancer else 1, 0, "B", 29, False])
    _write_csv(root / "train.csv", ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy",
                                   "invasive", "BIRADS", "implant", "density", "machine_id", "difficult_negative_case"], rows)
    return root


IMPORTERS = {
    "vindr": (vindr_tree, import_vindr),
    "cmmd": (cmmd_tree, import_cmmd),
    "inbreast": (inbreast_tree, import_inbreast),
    "rsna": (rsna_tree, import_rsna),
}


@pytest.mark.parametrize("name", list(IMPORTERS))
def test_importer_reads_the_data_set_as_it_ships(tmp_path: Path, name: str) -> None:
    make_tree, importer = IMPORTERS[name]
    result = importer(make_tree(tmp_path))
    breasts = group_breasts(result.rows)
    assert len(breasts) == 2 * PATIENTS and all(b.cc is not None and b.mlo is not None for b in breasts)
    for breast in breasts:
        patient = sorted({b.patient_id for b in breasts}).index(breast.patient_id)
        malignant = _malignant(patient, breast.laterality) if name != "cmmd" else (patient % 2 == 0 and breast.laterality == "L")
        assert breast.malignancy == int(malignant), (name, breast)
    if name == "vindr":
        assert {b.density for b in breasts} == {"C"} and {b.birads for b in breasts} == {1, 5}
        assert sorted(b.split for b in breasts).count("test") == 2
    if name == "inbreast":
        assert {b.birads for b in breasts} == {2, 4} and {b.density for b in breasts} == {"C"}
    if name == "rsna":
        assert any("'AT'" in problem for problem in result.problems)


@pytest.mark.parametrize("name", list(IMPORTERS))
def test_mdd_train_runs_end_to_end_on_the_imported_manifest(tmp_path: Path, name: str) -> None:
    make_tree, _ = IMPORTERS[name]
    root = make_tree(tmp_path / "data")
    manifest = tmp_path / "manifest.csv"
    runner = CliRunner()
    imported = runner.invoke(app, ["import-dataset", str(root), str(manifest), "--format", name], env={"COLUMNS": "200"})
    assert imported.exit_code == 0, imported.output
    assert len(read_manifest(manifest)) >= 4 * (PATIENTS - 1)
    trained = runner.invoke(
        app,
        ["train", "--manifest", str(manifest), "--backbone", "small_cnn", "--epochs", "1", "--batch-size", "2",
         "--val-fraction", "0.2", "--calibration-fraction", "0.2", "--threads", "1", "--device", "cpu",
         "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
        env={"COLUMNS": "200"},
    )
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "MODEL_CARD.md").is_file()
    assert f"manifest {manifest.name}" in (tmp_path / "run" / "MODEL_CARD.md").read_text(encoding="utf-8")
