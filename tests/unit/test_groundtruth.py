"""Ground-truth masks read back from real Labelme and COCO files written from synthetic views."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlkit.preprocessing.groundtruth import (
    AnnotatedImage,
    GroundTruthError,
    find_truth,
    read_coco,
    read_labelme_dir,
    read_labelme_file,
    region_of,
    write_coco,
    write_labelme,
)
from shared.synth import make_study


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def annotated() -> list[AnnotatedImage]:
    study = make_study(seed=11, rows=256, cols=208)
    return [
        AnnotatedImage(
            file_name=f"{study.accession_number}/{v.laterality}_{v.view}.dcm",
            breast=v.breast_mask,
            pectoral=v.pectoral_mask,
            sop_instance_uid=str(v.dataset.SOPInstanceUID),
        )
        for v in study.views
    ]


def test_labelme_round_trip_keeps_breast_and_pectoral(tmp_path: Path, annotated: list[AnnotatedImage]) -> None:
    written = write_labelme(annotated, tmp_path / "labelme")
    assert len(written) == 4
    document = json.loads(written[2].read_text(encoding="utf-8"))
    assert {s["label"] for s in document["shapes"]} == {"breast", "pectoral"}  # R-MLO has a muscle
    assert (document["imageHeight"], document["imageWidth"]) == (256, 208)

    truths = read_labelme_dir(tmp_path / "labelme")
    assert len(truths) == 4
    for item in annotated:
        truth = find_truth(truths, item.file_name, item.sop_instance_uid)
        assert truth is not None and truth.shape == (256, 208)
        assert _iou(truth.breast, item.breast) >= 0.98
        assert _iou(truth.pectoral, item.pectoral) >= (0.97 if item.pectoral.any() else 1.0)
        assert not truth.pectoral.any() or "MLO" in item.file_name


@pytest.mark.parametrize("encoding", ["polygon", "rle"])
def test_coco_round_trip(tmp_path: Path, annotated: list[AnnotatedImage], encoding: str) -> None:
    path = write_coco(annotated, tmp_path / "coco.json", encoding=encoding)  # type: ignore[arg-type]
    truths = read_coco(path)
    for item in annotated:
        truth = find_truth(truths, item.file_name)
        assert truth is not None and truth.sop_instance_uid == item.sop_instance_uid
        if encoding == "rle":  # RLE is lossless
            assert np.array_equal(truth.breast, item.breast)
            assert np.array_equal(truth.pectoral, item.pectoral)
        else:
            assert _iou(truth.breast, item.breast) >= 0.98
            assert _iou(truth.pectoral, item.pectoral) >= (0.97 if item.pectoral.any() else 1.0)


def test_labelme_by_hand_with_spanish_labels_and_a_mask_shape(tmp_path: Path) -> None:
    patch = np.zeros((4, 6), dtype=np.uint8)
    patch[1:3, 2:5] = 255
    buffer = io.BytesIO()
    Image.fromarray(patch).save(buffer, format="PNG")
    document = {
        "version": "5.4.1",
        "imagePath": "..\\imagenes\\paciente_01.png",
        "imageData": None,
        "imageHeight": 20,
        "imageWidth": 30,
        "shapes": [
            {"label": "Mama", "points": [[0, 0], [10, 0], [10, 10], [0, 10]], "shape_type": "polygon"},
            {"label": "Músculo pectoral", "points": [[0, 0], [4, 0], [0, 4]], "shape_type": "polygon"},
            {"label": "masa", "points": [[20, 10], [25, 15]], "shape_type": "rectangle"},
            {"label": "mama", "points": [[20, 12], [25, 15]], "shape_type": "mask",
             "mask": base64.b64encode(buffer.getvalue()).decode("ascii")},
        ],
    }
    path = tmp_path / "paciente_01.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    truth = read_labelme_file(path)

    assert truth.key == "../imagenes/paciente_01"
    assert find_truth({truth.key: truth}, "estudio/paciente_01.dcm") is truth
    assert truth.breast[0:11, 0:11].all() and truth.breast[13:15, 22:25].all()
    assert truth.breast.sum() == 121 + 6  # the "masa" rectangle is not breast
    assert truth.pectoral[0, 0] and truth.pectoral[0, 4] and not truth.pectoral[5, 5]
    assert (truth.breast | truth.pectoral).sum() == truth.breast.sum()


def test_label_names_and_bad_files_are_explained(tmp_path: Path) -> None:
    assert region_of("pectoral_muscle") == region_of("Pectoral Muscle") == "pectoral"
    assert region_of("breast") == region_of("MAMA") == "breast"
    assert region_of("calcificacion") is None

    bad = tmp_path / "roto.json"
    bad.write_text('{"shapes": []}', encoding="utf-8")
    with pytest.raises(GroundTruthError, match="roto.json"):
        read_labelme_file(bad)
    with pytest.raises(GroundTruthError, match="COCO"):
        read_coco(bad)
    line = tmp_path / "linea.json"
    line.write_text(json.dumps({"imagePath": "a.png", "imageHeight": 5, "imageWidth": 5, "shapes": [
        {"label": "breast", "points": [[0, 0], [4, 4]], "shape_type": "line"}]}), encoding="utf-8")
    with pytest.raises(GroundTruthError, match="line"):
        read_labelme_file(line)


def test_ambiguous_file_names_need_the_path_or_the_uid(annotated: list[AnnotatedImage], tmp_path: Path) -> None:
    other = AnnotatedImage("OTRO/R_CC.dcm", annotated[0].breast, annotated[0].pectoral, "1.2.3.4")
    by_uid = AnnotatedImage("1.2.840.99.7", annotated[1].breast, annotated[1].pectoral)  # named by its UID
    truths = read_coco(write_coco([*annotated, other, by_uid], tmp_path / "c.json", encoding="rle"))
    assert find_truth(truths, "pacs/IM0001", "1.2.840.99.7") is truths["1.2.840.99.7"]
    assert find_truth(truths, "desconocido/R_CC.dcm") is None  # two R_CC images: ambiguous
    assert find_truth(truths, "x/y.dcm", "1.2.3.4") is truths["OTRO/R_CC"]
    assert find_truth(truths, annotated[0].file_name) is truths[annotated[0].file_name[:-4]]
