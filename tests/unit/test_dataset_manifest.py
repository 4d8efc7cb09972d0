"""The training manifest: one row per breast-view image, CSV or JSON Lines, strict validation."""

from pathlib import Path

import pytest

from mlkit.datasets.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    ManifestRow,
    group_breasts,
    read_manifest,
    write_manifest,
)


def _row(view: str, laterality: str = "L", **kw: object) -> ManifestRow:
    data: dict[str, object] = {
        "study_id": "1.2.3", "patient_id": "P-1", "laterality": laterality, "view": view,
        "image_path": f"img/{laterality}_{view}.dcm", "source": "dicom_csv",
    }
    data.update(kw)
    return ManifestRow.model_validate(data)


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_rows_round_trip_with_paths_relative_to_the_manifest(tmp_path: Path, name: str) -> None:
    inside = tmp_path / "data" / "a.LJPEG"
    rows = [
        _row("CC", malignancy=1, birads=5, density="C", finding="mass", split="train",
             image_path=str(inside), source="ddsm"),
        _row("MLO", image_path="img/b.npy", source="synthetic"),
    ]
    path = write_manifest(rows, tmp_path / name)
    text = path.read_text()
    assert str(tmp_path) not in text and "data/a.LJPEG" in text
    back = read_manifest(path)
    assert back[0].image_path == str(inside) and back[1].image_path == str(tmp_path / "img" / "b.npy")
    assert [r.model_copy(update={"image_path": ""}) for r in back] == [
        r.model_copy(update={"image_path": ""}) for r in rows
    ]
    assert [r.image_format for r in back] == ["ljpeg", "npy"]
    assert read_manifest(path, resolve=False)[1].image_path == "img/b.npy"


def test_csv_header_is_the_documented_column_list(tmp_path: Path) -> None:
    path = write_manifest([_row("CC")], tmp_path / "m.csv")
    assert path.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)


def test_common_spellings_are_normalised() -> None:
    row = _row("mlo", laterality="izquierda", birads="BI-RADS 4B", density="2", malignancy="maligno",
               split="validation", source="cbis-ddsm")
    assert (row.laterality, row.view, row.birads, row.density, row.malignancy, row.split, row.source) == (
        "L", "MLO", 4, "B", 1, "val", "cbis_ddsm"
    )


def test_bad_cells_are_reported_with_file_line_and_both_languages(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    write_manifest([_row("CC"), _row("MLO")], path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",MLO,", ",LAT,").replace("dicom_csv", "pacs")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    message = str(error.value)
    assert f"{path}:3" in message
    assert "vista inválida / invalid view 'LAT'" in message
    assert "fuente inválida / invalid source 'pacs'" in message


def test_structural_problems_are_refused(tmp_path: Path) -> None:
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("study_id,patient_id,view,image_path,source,color\n")
    with pytest.raises(ManifestError, match="laterality"):
        read_manifest(bad_header)
    duplicate = tmp_path / "b.jsonl"
    with pytest.raises(ManifestError, match="repetida|repeated"):
        write_manifest([_row("CC"), _row("CC")], duplicate)
    broken = tmp_path / "c.jsonl"
    broken.write_text('{"study_id": "1"\n')
    with pytest.raises(ManifestError, match="c.jsonl:1"):
        read_manifest(broken)
    with pytest.raises(ManifestError, match=".parquet"):
        write_manifest([_row("CC")], tmp_path / "d.parquet")


def test_breasts_pair_cc_and_mlo_with_the_worst_labels() -> None:
    rows = [
        _row("CC", malignancy=0, birads=2, density=None),
        _row("MLO", malignancy=1, birads=4, density="D"),
        _row("CC", laterality="R", malignancy=0, birads=1, density="D"),
    ]
    left, right = group_breasts(rows)
    assert (left.laterality, left.cc, left.mlo) == ("L", rows[0], rows[1])
    assert (left.malignancy, left.birads, left.density) == (1, 4, "D")
    assert (right.cc, right.mlo, right.malignancy) == (rows[2], None, 0)
    with pytest.raises(ManifestError, match="split"):
        group_breasts([_row("CC", split="train"), _row("MLO", split="test")])
