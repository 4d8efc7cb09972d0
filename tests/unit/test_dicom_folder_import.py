"""A folder of DICOM studies plus a labels CSV -> manifest rows with pseudonymous patients."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from mlkit.datasets.dicom_folder import import_dicom_folder, pseudonym
from mlkit.datasets.manifest import group_breasts, read_manifest
from mlkit.datasets.result import DatasetImportError
from shared.synth import make_view, write_studies


def write_folder(root: Path) -> tuple[str, str]:
    """Two four-view studies, a stray text file and an image without laterality; returns UID, accession."""
    first, second = write_studies(root / "estudios", count=2, seed=40, rows=96, cols=80)
    (root / "estudios" / "notas.txt").write_text("no es DICOM")
    odd = make_view(laterality="R", view="CC", rows=96, cols=80, seed=99)
    del odd.dataset.ImageLaterality
    odd.save(root / "estudios" / "sin_lado.dcm")
    (root / "labels.csv").write_text(
        "StudyInstanceUID,AccessionNumber,laterality,birads,density,pathology,split\n"
        f"{first.study_uid},,,1,B,normal,train\n"
        f",{second.accession_number},L,4C,4,maligno,val\n"
        f",{second.accession_number},R,2,4,benign,val\n"
        ",NO-EXISTE,,1,A,normal,\n"
    )
    return first.study_uid, second.accession_number


def test_labels_are_matched_by_uid_accession_and_laterality(tmp_path: Path) -> None:
    uid, _ = write_folder(tmp_path)
    result = import_dicom_folder(tmp_path, tmp_path / "labels.csv", salt="hospital")
    assert len(result.rows) == 8
    breasts = {(b.study_id == uid, b.laterality): b for b in group_breasts(result.rows)}
    assert all(b.cc is not None and b.mlo is not None for b in breasts.values())
    first_left = breasts[(True, "L")]
    assert (first_left.malignancy, first_left.birads, first_left.density, first_left.split) == (0, 1, "B", "train")
    second_left, second_right = breasts[(False, "L")], breasts[(False, "R")]
    assert (second_left.malignancy, second_left.birads, second_left.density) == (1, 4, "D")
    assert (second_right.malignancy, second_right.birads, second_right.split) == (0, 2, "val")
    problems = "\n".join(result.problems)
    assert "sin_lado.dcm" in problems and "NO-EXISTE" in problems and "no son imágenes DICOM" in problems


def test_patients_are_pseudonymous_and_the_salt_changes_them(tmp_path: Path) -> None:
    write_folder(tmp_path)
    rows = import_dicom_folder(tmp_path, tmp_path / "labels.csv", salt="a").rows
    assert {r.patient_id for r in rows} == {pseudonym("SIN0000040", "a"), pseudonym("SIN0000041", "a")}
    assert not any("SIN00000" in r.patient_id for r in rows)
    other = import_dicom_folder(tmp_path, tmp_path / "labels.csv", salt="b").rows
    assert {r.patient_id for r in rows}.isdisjoint({r.patient_id for r in other})


def test_a_bad_label_stops_the_import_naming_the_line(tmp_path: Path) -> None:
    write_folder(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(labels.read_text().replace("4C", "9"))
    with pytest.raises(DatasetImportError, match=r"labels.csv:3: BI-RADS inválido / invalid BI-RADS '9'"):
        import_dicom_folder(tmp_path, labels)
    labels.write_text("patient,birads\nX,1\n")
    with pytest.raises(DatasetImportError, match="StudyInstanceUID"):
        import_dicom_folder(tmp_path, labels)


def test_cli_writes_the_manifest_and_fails_without_labels(tmp_path: Path) -> None:
    write_folder(tmp_path)
    out = tmp_path / "out" / "hospital.jsonl"
    runner = CliRunner()
    ok = runner.invoke(app, ["import-dataset", "--format", "dicom-csv", str(tmp_path), str(out), "--salt", "s"])
    assert ok.exit_code == 0, ok.output
    assert "Problemas / problems: 3" in ok.output
    rows = read_manifest(out)
    assert len(rows) == 8 and {r.source for r in rows} == {"dicom_csv"}
    (tmp_path / "labels.csv").unlink()
    missing = runner.invoke(app, ["import-dataset", "--format", "dicom-csv", str(tmp_path), str(out)])
    assert missing.exit_code != 0 and "labels.csv" in missing.output
