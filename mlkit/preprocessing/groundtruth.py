"""Máscaras de referencia / ground-truth masks from Labelme and COCO annotations.

The seed annotated breasts and pectoral muscles with Labelme (one JSON per image) and in COCO
format (one JSON per data set). Both are read here into boolean masks per image, in the frame of
the image as stored in its DICOM file (no mirroring), keyed by the image's file name and, where the
annotation carries it, its SOPInstanceUID. The synthetic generator's masks are written to both
formats by :func:`write_labelme` and :func:`write_coco`, so tests exercise real files.

Region convention: ``breast`` is the whole body region the segmenter must find (breast tissue
plus, on MLO views, the pectoral muscle, as :mod:`shared.synth` draws it); ``pectoral`` is the
muscle alone. A ``breast`` polygon drawn without the muscle is completed with the ``pectoral``
one, so both annotation habits give the same mask.
"""

from __future__ import annotations

import base64
import io
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Final, Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

Region = Literal["breast", "pectoral"]

#: Label names (normalised: lower case, no accents, ``_`` for spaces and hyphens) per region.
BREAST_LABELS: Final[frozenset[str]] = frozenset(
    {"breast", "mama", "seno", "breast_mask", "mask", "tejido_mamario", "breast_tissue", "body"}
)
PECTORAL_LABELS: Final[frozenset[str]] = frozenset(
    {"pectoral", "pectoral_muscle", "musculo_pectoral", "pectoralis", "pectoralis_major", "pec", "muscle"}
)
#: Extensions dropped from image names to make keys (``R_CC.dcm`` and ``R_CC.png`` are one image).
IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy", ".ljpeg", ".json"}
)
#: Simplification tolerance (pixels) of polygons written from masks.
POLYGON_TOLERANCE_PX: Final[float] = 0.75


class GroundTruthError(ValueError):
    """An annotation file that cannot be read, with the file and the reason."""


@dataclass(frozen=True)
class GroundTruth:
    """Reference masks of one image, in the stored (unmirrored) frame of its DICOM file."""

    key: str
    breast: np.ndarray
    pectoral: np.ndarray
    sop_instance_uid: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the annotated image."""
        return (int(self.breast.shape[0]), int(self.breast.shape[1]))


def normalise_label(label: str) -> str:
    """Lower case, accents removed, spaces and hyphens turned into ``_`` (``"Músculo pectoral"`` → ``musculo_pectoral``)."""
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    return "_".join(text.strip().lower().replace("-", " ").split())


def region_of(label: str) -> Region | None:
    """The region a label names, or ``None`` for labels this project does not evaluate (a mass, a clip)."""
    name = normalise_label(label)
    if name in PECTORAL_LABELS:
        return "pectoral"
    if name in BREAST_LABELS:
        return "breast"
    return None


def image_key(name: str) -> str:
    """Key of an image from its file name or relative path: POSIX path without an image extension.

    Only known extensions are removed, so a bare SOPInstanceUID (``1.2.840.113619.2.55``) stays whole.
    """
    path = PurePath(name.replace("\\", "/"))
    return path.with_suffix("").as_posix() if path.suffix.lower() in IMAGE_SUFFIXES else path.as_posix()


def _finish(key: str, breast: np.ndarray, pectoral: np.ndarray, sop_uid: str | None) -> GroundTruth:
    return GroundTruth(key=key, breast=breast | pectoral, pectoral=pectoral, sop_instance_uid=sop_uid or None)


# --- Labelme --------------------------------------------------------------------------------------


class LabelmeShape(BaseModel):
    """One shape of a Labelme file (only the fields used here)."""

    model_config = ConfigDict(extra="ignore")

    label: str
    points: list[list[float]] = Field(default_factory=list)
    shape_type: str | None = "polygon"
    mask: str | None = None


class LabelmeFile(BaseModel):
    """A Labelme annotation file (``imagePath``, ``imageHeight``, ``imageWidth``, ``shapes``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: str = "5.5.0"
    flags: dict[str, bool] = Field(default_factory=dict)
    shapes: list[LabelmeShape] = Field(default_factory=list)
    image_path: str = Field(alias="imagePath")
    image_data: str | None = Field(None, alias="imageData")
    image_height: int = Field(alias="imageHeight", gt=0)
    image_width: int = Field(alias="imageWidth", gt=0)
    sop_instance_uid: str | None = Field(None, alias="sopInstanceUID")


def _decode_png_b64(data: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image) > 0


def labelme_shape_mask(shape: LabelmeShape, rows: int, cols: int) -> np.ndarray:
    """Rasterise one Labelme shape as labelme itself does (PIL, outline included).

    Supports ``polygon``, ``rectangle``, ``circle`` and ``mask`` shapes; ``line`` and ``point``
    shapes enclose no area and raise :class:`GroundTruthError`.
    """
    kind = shape.shape_type or "polygon"
    if kind == "mask":
        if shape.mask is None or len(shape.points) != 2:
            raise GroundTruthError(f"forma 'mask' sin datos / mask shape without data: {shape.label}")
        out = np.zeros((rows, cols), dtype=bool)
        (x1, y1), (x2, y2) = (np.asarray(shape.points, dtype=np.float64).astype(int)).tolist()
        patch = _decode_png_b64(shape.mask)
        region = out[y1 : y2 + 1, x1 : x2 + 1]
        region[...] = patch[: region.shape[0], : region.shape[1]]
        return out
    canvas = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(float(p[0]), float(p[1])) for p in shape.points]
    if kind == "polygon" and len(xy) > 2:
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle" and len(xy) == 2:
        (xa, ya), (xb, yb) = xy
        draw.rectangle([min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)], outline=1, fill=1)
    elif kind == "circle" and len(xy) == 2:
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    else:
        raise GroundTruthError(
            f"forma no soportada / unsupported shape: {kind} con {len(xy)} puntos ({shape.label})"
        )
    return np.asarray(canvas, dtype=np.uint8) > 0


def read_labelme_file(path: str | Path) -> GroundTruth:
    """Read one Labelme JSON into a :class:`GroundTruth` keyed by its ``imagePath``."""
    path = Path(path)
    try:
        annotation = LabelmeFile.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise GroundTruthError(f"{path}: no es un archivo Labelme válido / not a valid Labelme file: {exc}") from exc
    rows, cols = annotation.image_height, annotation.image_width
    masks = {"breast": np.zeros((rows, cols), dtype=bool), "pectoral": np.zeros((rows, cols), dtype=bool)}
    for shape in annotation.shapes:
        region = region_of(shape.label)
        if region is not None:
            try:
                masks[region] |= labelme_shape_mask(shape, rows, cols)
            except GroundTruthError as exc:
                raise GroundTruthError(f"{path}: {exc}") from exc
    return _finish(image_key(annotation.image_path), masks["breast"], masks["pectoral"], annotation.sop_instance_uid)


def read_labelme_dir(folder: str | Path) -> dict[str, GroundTruth]:
    """Read every ``*.json`` under ``folder`` (recursively) as Labelme; keyed by image key."""
    truths: dict[str, GroundTruth] = {}
    for path in sorted(Path(folder).rglob("*.json")):
        truth = read_labelme_file(path)
        truths[truth.key] = truth
    if not truths:
        raise GroundTruthError(f"{folder}: ningún JSON de Labelme / no Labelme JSON files")
    return truths


# --- COCO -----------------------------------------------------------------------------------------


class CocoImage(BaseModel):
    """An entry of ``images`` in a COCO file."""

    model_config = ConfigDict(extra="allow")

    id: int
    file_name: str
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    sop_instance_uid: str | None = None


class CocoCategory(BaseModel):
    """An entry of ``categories`` in a COCO file."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str


class CocoAnnotation(BaseModel):
    """An entry of ``annotations``: polygons (list of flat x,y lists) or RLE (``counts``, ``size``)."""

    model_config = ConfigDict(extra="allow")

    id: int | None = None
    image_id: int
    category_id: int
    segmentation: list[list[float]] | dict[str, Any]
    iscrowd: int = 0


class CocoFile(BaseModel):
    """A COCO instance-segmentation file."""

    model_config = ConfigDict(extra="allow")

    images: list[CocoImage]
    annotations: list[CocoAnnotation] = Field(default_factory=list)
    categories: list[CocoCategory]


def coco_segmentation_mask(segmentation: list[list[float]] | dict[str, Any], rows: int, cols: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) with pycocotools."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, dict):
        counts = segmentation.get("counts")
        if isinstance(counts, list):
            rle = coco_mask.frPyObjects(segmentation, rows, cols)
        else:
            rle = {"size": list(segmentation.get("size", [rows, cols])), "counts": str(counts).encode("ascii")}
        decoded = coco_mask.decode(rle)
    else:
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((rows, cols), dtype=bool)
        decoded = coco_mask.decode(coco_mask.frPyObjects(polygons, rows, cols))
    if decoded.ndim == 3:
        decoded = decoded.any(axis=2)
    if decoded.shape != (rows, cols):
        raise GroundTruthError(f"RLE de {decoded.shape} para una imagen de {(rows, cols)} / RLE size mismatch")
    return decoded.astype(bool)


def read_coco(path: str | Path) -> dict[str, GroundTruth]:
    """Read a COCO JSON into one :class:`GroundTruth` per image, keyed by its ``file_name``."""
    path = Path(path)
    try:
        data = CocoFile.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise GroundTruthError(f"{path}: no es un archivo COCO válido / not a valid COCO file: {exc}") from exc
    regions = {category.id: region_of(category.name) for category in data.categories}
    images = {image.id: image for image in data.images}
    masks: dict[int, dict[str, np.ndarray]] = {
        image.id: {
            "breast": np.zeros((image.height, image.width), dtype=bool),
            "pectoral": np.zeros((image.height, image.width), dtype=bool),
        }
        for image in data.images
    }
    for annotation in data.annotations:
        image = images.get(annotation.image_id)
        if image is None:
            raise GroundTruthError(f"{path}: anotación de una imagen inexistente / unknown image_id {annotation.image_id}")
        region = regions.get(annotation.category_id)
        if region is not None:
            masks[image.id][region] |= coco_segmentation_mask(annotation.segmentation, image.height, image.width)
    truths = {}
    for image in data.images:
        truth = _finish(image_key(image.file_name), masks[image.id]["breast"], masks[image.id]["pectoral"], image.sop_instance_uid)
        truths[truth.key] = truth
    return truths


def find_truth(
    truths: Mapping[str, GroundTruth], relative_path: str | PurePath, sop_instance_uid: str | None = None
) -> GroundTruth | None:
    """The annotation of one DICOM file: by SOPInstanceUID, then relative path, then bare file name."""
    if sop_instance_uid:
        for truth in truths.values():
            if truth.sop_instance_uid == sop_instance_uid:
                return truth
        if sop_instance_uid in truths:
            return truths[sop_instance_uid]
    key = image_key(PurePath(relative_path).as_posix())
    if key in truths:
        return truths[key]
    stem = PurePath(key).name
    matches = [truth for k, truth in truths.items() if PurePath(k).name == stem]
    return matches[0] if len(matches) == 1 else None


# --- export ---------------------------------------------------------------------------------------


def mask_polygons(mask: np.ndarray, tolerance: float = POLYGON_TOLERANCE_PX) -> list[list[tuple[float, float]]]:
    """Outer contours of ``mask`` as polygons of (x, y) points in image coordinates.

    Coordinates follow Labelme and COCO: pixel (row r, column c) covers x in [c, c+1), y in
    [r, r+1). Holes are not represented (write RLE to keep them).
    """
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    polygons: list[list[tuple[float, float]]] = []
    for contour in find_contours(padded, 0.5, fully_connected="high"):
        # Undo the padding (-1) and move from pixel centres to pixel corners (+0.5).
        rc = approximate_polygon(contour, tolerance)[:-1] - 0.5
        if len(rc) >= 3:
            polygons.append([(float(c), float(r)) for r, c in rc])
    # Contours nested an odd number of times trace holes: keep the outer ones (and islands).
    return [p for p in polygons if sum(_inside(p, other) for other in polygons if other is not p) % 2 == 0]


def _inside(inner: list[tuple[float, float]], outer: list[tuple[float, float]]) -> bool:
    """Whether ``inner``'s first vertex lies inside ``outer`` (even-odd rule)."""
    x, y = inner[0]
    crossings = False
    for (x1, y1), (x2, y2) in zip(outer, outer[1:] + outer[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            crossings = not crossings
    return crossings


@dataclass(frozen=True)
class AnnotatedImage:
    """What the exporters write for one image: its file name (relative path) and its masks."""

    file_name: str
    breast: np.ndarray
    pectoral: np.ndarray
    sop_instance_uid: str | None = None


def labelme_document(item: AnnotatedImage) -> dict[str, Any]:
    """The Labelme JSON of one image: a ``breast`` polygon per component and ``pectoral`` ones."""
    shapes = []
    for label, mask in (("breast", item.breast), ("pectoral", item.pectoral)):
        for polygon in mask_polygons(mask):
            shapes.append(
                {"label": label, "points": [list(p) for p in polygon], "group_id": None,
                 "description": "", "shape_type": "polygon", "flags": {}, "mask": None}
            )
    rows, cols = item.breast.shape
    document: dict[str, Any] = {
        "version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": item.file_name,
        "imageData": None, "imageHeight": int(rows), "imageWidth": int(cols),
    }
    if item.sop_instance_uid:
        document["sopInstanceUID"] = item.sop_instance_uid
    return document


def write_labelme(items: Iterable[AnnotatedImage], folder: str | Path) -> list[Path]:
    """Write one Labelme JSON per image under ``folder`` (``<file_name without extension>.json``)."""
    written = []
    for item in items:
        target = Path(folder) / f"{image_key(item.file_name)}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(labelme_document(item)), encoding="utf-8")
        written.append(target)
    return written


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as coco_mask

    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def coco_document(items: Iterable[AnnotatedImage], encoding: Literal["polygon", "rle"] = "polygon") -> dict[str, Any]:
    """A COCO document with categories ``breast`` (1) and ``pectoral`` (2), polygons or compressed RLE."""
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        rows, cols = item.breast.shape
        entry: dict[str, Any] = {"id": image_id, "file_name": item.file_name, "height": int(rows), "width": int(cols)}
        if item.sop_instance_uid:
            entry["sop_instance_uid"] = item.sop_instance_uid
        images.append(entry)
        for category_id, mask in ((1, item.breast), (2, item.pectoral)):
            if not mask.any():
                continue
            rows_idx, cols_idx = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            segmentation: Any
            if encoding == "rle":
                segmentation = _rle(mask)
            else:
                segmentation = [[c for point in polygon for c in point] for polygon in mask_polygons(mask)]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                "segmentation": segmentation, "area": int(mask.sum()), "iscrowd": 1 if encoding == "rle" else 0,
                "bbox": [int(cols_idx[0]), int(rows_idx[0]), int(cols_idx[-1] - cols_idx[0] + 1), int(rows_idx[-1] - rows_idx[0] + 1)],
            })
    return {
        "info": {"description": "Mexican Deep DICOM: mama y músculo pectoral / breast and pectoral muscle"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "breast", "supercategory": "anatomy"},
                       {"id": 2, "name": "pectoral", "supercategory": "anatomy"}],
    }


def write_coco(items: Iterable[AnnotatedImage], path: str | Path, encoding: Literal["polygon", "rle"] = "polygon") -> Path:
    """Write the images' masks as one COCO JSON file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(coco_document(items, encoding)), encoding="utf-8")
    return target


__all__ = [
    "AnnotatedImage",
    "GroundTruth",
    "GroundTruthError",
    "coco_document",
    "coco_segmentation_mask",
    "find_truth",
    "image_key",
    "labelme_document",
    "labelme_shape_mask",
    "mask_polygons",
    "normalise_label",
    "read_coco",
    "read_labelme_dir",
    "read_labelme_file",
    "region_of",
    "write_coco",
    "write_labelme",
]
