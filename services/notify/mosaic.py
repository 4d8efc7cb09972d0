"""The results picture: the four views of a study as a 2x2 mosaic under a coloured triage band.

Layout (``MOSAIC_ROWS`` x ``MOSAIC_COLS`` RGB pixels): a header band in the colour of the triage
light with its name and the model label, then R-CC | L-CC over R-MLO | L-MLO, then a dark footer
with the per-breast results. Views hang as radiologists read them: right breast in the left
column, left breast in the right column, chest walls back to back in the middle. Images stored in
the IHE mammography convention (:data:`HANGING_ORIENTATION`) already hang that way; a view whose
Patient Orientation (0020,0020) says otherwise is mirrored (left-right and/or top-bottom), and a
view without Patient Orientation is mirrored when its tissue lies on the outer side.

Each view is decoded once (first frame only), subsampled to about twice the tile size before any
arithmetic, windowed with its own VOI window (Window Center/Width, else the 1st-99th percentile),
turned to display polarity (MONOCHROME1 inverted) and resized into its tile.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, pixel_array

Slot = tuple[str, str]  # (laterality R/L, view CC/MLO)

TILE_ROWS: Final[int] = 384
TILE_COLS: Final[int] = 320
HEADER_ROWS: Final[int] = 72
FOOTER_ROWS: Final[int] = 56
MOSAIC_ROWS: Final[int] = HEADER_ROWS + 2 * TILE_ROWS + FOOTER_ROWS
MOSAIC_COLS: Final[int] = 2 * TILE_COLS

#: Grid position (row, column) of each view in the mosaic.
SLOTS: Final[dict[Slot, tuple[int, int]]] = {("R", "CC"): (0, 0), ("L", "CC"): (0, 1), ("R", "MLO"): (1, 0), ("L", "MLO"): (1, 1)}
#: Patient Orientation (row direction, column direction) of a view that hangs as displayed.
HANGING_ORIENTATION: Final[dict[Slot, tuple[str, str]]] = {
    ("R", "CC"): ("P", "L"),
    ("L", "CC"): ("A", "R"),
    ("R", "MLO"): ("P", "F"),
    ("L", "MLO"): ("A", "F"),
}
_VIEW_KIND: Final[dict[str, str]] = {"CC": "CC", "MLO": "MLO", "ML": "MLO", "LM": "MLO", "LMO": "MLO"}
_OPPOSITE: Final[dict[str, str]] = {"A": "P", "P": "A", "L": "R", "R": "L", "H": "F", "F": "H"}

LIGHT_RGB: Final[dict[str, tuple[int, int, int]]] = {"RED": (200, 30, 30), "YELLOW": (245, 200, 0), "GREEN": (30, 140, 60)}
LIGHT_LABELS: Final[dict[str, str]] = {
    "RED": "SEMÁFORO ROJO / RED",
    "YELLOW": "SEMÁFORO AMARILLO / YELLOW",
    "GREEN": "SEMÁFORO VERDE / GREEN",
}
FOOTER_RGB: Final[tuple[int, int, int]] = (32, 32, 32)
MISSING_RGB: Final[tuple[int, int, int]] = (60, 60, 60)


def view_slot(header: Dataset) -> Slot | None:
    """The mosaic slot of an image from its laterality and view position, or ``None``."""
    laterality = str(header.get("ImageLaterality") or header.get("Laterality") or "").strip().upper()
    view = _VIEW_KIND.get(str(header.get("ViewPosition") or "").strip().upper())
    if laterality not in ("R", "L") or view is None:
        return None
    return laterality, view


def display_view(header: Dataset, raw: bytes, slot: Slot) -> np.ndarray:
    """One stored view as an 8-bit image hung for ``slot``, fitted inside a tile (rows, cols)."""
    pixels = pixel_array(io.BytesIO(raw), index=0)
    if pixels.ndim == 3:  # a colour image: its luminance is enough for a thumbnail
        pixels = pixels.mean(axis=2)
    step = max(1, min(pixels.shape[0] // (2 * TILE_ROWS), pixels.shape[1] // (2 * TILE_COLS)))
    pixels = np.ascontiguousarray(pixels[::step, ::step])
    values = np.asarray(apply_modality_lut(pixels, header), dtype=np.float32)
    low, high = _window(header, values)
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if str(header.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        scaled = 1.0 - scaled
    image = (scaled * 255.0).round().astype(np.uint8)
    flip_lr, flip_ud = _flips(header, image, slot)
    if flip_lr:
        image = image[:, ::-1]
    if flip_ud:
        image = image[::-1, :]
    return _fit(image)


def _window(header: Dataset, values: np.ndarray) -> tuple[float, float]:
    """Lower and upper bound of the VOI window (first Window Center/Width, else percentiles)."""
    center, width = _first(header.get("WindowCenter")), _first(header.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return center - width / 2.0, center + width / 2.0
    low, high = np.percentile(values, [1.0, 99.0])
    return float(low), float(high)


def _first(value: object) -> float | None:
    """First number of a possibly multi-valued DS element (several windows may be offered)."""
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue):
        return float(value[0]) if len(value) else None
    return float(value)  # type: ignore[arg-type]


def _flips(header: Dataset, image: np.ndarray, slot: Slot) -> tuple[bool, bool]:
    """Whether the view must be mirrored left-right and top-bottom to hang as ``slot``."""
    wanted_row, wanted_col = HANGING_ORIENTATION[slot]
    orientation = [str(part).strip().upper() for part in (header.get("PatientOrientation") or [])]
    if len(orientation) == 2 and all(orientation):
        return orientation[0][0] == _OPPOSITE[wanted_row], orientation[1][0] == _OPPOSITE[wanted_col]
    # No orientation: the breast rests against the chest wall, so the brighter edge is the chest wall,
    # which must face the middle of the mosaic (right edge for R, left edge for L).
    edge = max(1, image.shape[1] // 10)
    left, right = float(image[:, :edge].mean()), float(image[:, -edge:].mean())
    chest_wall_right = right >= left
    return chest_wall_right != (slot[0] == "R"), False


def _fit(image: np.ndarray) -> np.ndarray:
    """Resize keeping the aspect ratio so that the image fits inside one tile."""
    scale = min(TILE_ROWS / image.shape[0], TILE_COLS / image.shape[1])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


@lru_cache(maxsize=32)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, has every Spanish letter); Pillow's own font otherwise."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def _draw_fitted(
    draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, width: int, fill: tuple[int, int, int], bold: bool = False
) -> None:
    """Draw ``text`` at ``xy``, shrinking the font until it fits in ``width`` pixels."""
    while size > 8 and draw.textlength(text, font=_font(size, bold)) > width:
        size -= 1
    draw.text(xy, text, font=_font(size, bold), fill=fill)


def render_mosaic(
    views: dict[Slot, np.ndarray], light: str, model_label: str, footer_lines: list[str]
) -> np.ndarray:
    """The RGB mosaic (``MOSAIC_ROWS`` x ``MOSAIC_COLS`` x 3, uint8) of up to four fitted views.

    ``views`` maps a slot to the output of :func:`display_view`; a missing slot shows a grey
    "sin imagen / no image" tile. ``model_label`` is the line under the light's name.
    """
    canvas = Image.new("RGB", (MOSAIC_COLS, MOSAIC_ROWS), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    band = LIGHT_RGB[light]
    ink = (0, 0, 0) if light == "YELLOW" else (255, 255, 255)
    draw.rectangle([0, 0, MOSAIC_COLS - 1, HEADER_ROWS - 1], fill=band)
    _draw_fitted(draw, (12, 6), LIGHT_LABELS[light], 30, MOSAIC_COLS - 24, ink, bold=True)
    _draw_fitted(draw, (12, 44), model_label, 16, MOSAIC_COLS - 24, ink)
    for slot, (grid_row, grid_col) in SLOTS.items():
        top, left = HEADER_ROWS + grid_row * TILE_ROWS, grid_col * TILE_COLS
        image = views.get(slot)
        if image is None:
            draw.rectangle([left, top, left + TILE_COLS - 1, top + TILE_ROWS - 1], fill=MISSING_RGB)
            draw.text((left + 12, top + TILE_ROWS // 2), "sin imagen / no image", font=_font(16), fill=(220, 220, 220))
        else:
            rows, cols = image.shape
            # Chest walls meet in the middle: R tiles hug the right edge of their cell, L tiles the left.
            x = left + (TILE_COLS - cols if slot[0] == "R" else 0)
            canvas.paste(Image.fromarray(image).convert("RGB"), (x, top + (TILE_ROWS - rows) // 2))
        label_x = left + 8 if slot[0] == "R" else left + TILE_COLS - 8 - int(draw.textlength(f"{slot[0]} {slot[1]}", font=_font(18, True)))
        draw.text((label_x, top + 6), f"{slot[0]} {slot[1]}", font=_font(18, True), fill=(255, 255, 255))
    footer_top = HEADER_ROWS + 2 * TILE_ROWS
    draw.rectangle([0, footer_top, MOSAIC_COLS - 1, MOSAIC_ROWS - 1], fill=FOOTER_RGB)
    for index, line in enumerate(footer_lines[:3]):
        _draw_fitted(draw, (10, footer_top + 3 + index * 17), line, 13, MOSAIC_COLS - 20, (235, 235, 235))
    return np.asarray(canvas, dtype=np.uint8)
