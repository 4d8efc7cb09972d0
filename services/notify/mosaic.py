"""The results picture: the four views of a study as a 2x2 mosaic under a coloured triage band.

Layout (``MOSAIC_ROWS`` x ``MOSAIC_COLS`` RGB pixels): a header band in the colour of the triage
light with its name and the model label, then R-CC | L-CC over R-MLO | L-MLO, then a dark footer
with the per-breast results. Views hang as radiologists read them: right breast in the left
column, left breast in the right column, chest walls back to back in the middle. Images stored in
the IHE mammography convention (:data:`shared.dicom_vocabulary.HANGING_ORIENTATION`) already hang that way; a view whose
Patient Orientation (0020,0020) says otherwise is mirrored (left-right and/or top-bottom), and a
view without Patient Orientation is mirrored when its tissue lies on the outer side.

Each view is decoded once (first frame only), subsampled to about twice the tile size before any
arithmetic, turned into a display image exactly as preprocessing and WADO-RS ``/rendered`` do
(:func:`shared.imaging.display.display_values`: modality LUT, its own VOI LUT or window, else a
percentile window; MONOCHROME1 inverted) and resized into its tile.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from shared.imaging.display import display_values, first_grey_frame, to_uint8
from shared.dicom_vocabulary import Laterality, Slot, View, chest_wall_on_left, hanging_flips, slot_from_dataset

TILE_ROWS: Final[int] = 384
TILE_COLS: Final[int] = 320
HEADER_ROWS: Final[int] = 72
FOOTER_ROWS: Final[int] = 56
MOSAIC_ROWS: Final[int] = HEADER_ROWS + 2 * TILE_ROWS + FOOTER_ROWS
MOSAIC_COLS: Final[int] = 2 * TILE_COLS

#: Grid position (row, column) of each view in the mosaic.
SLOTS: Final[dict[Slot, tuple[int, int]]] = {
    (Laterality.RIGHT, View.CC): (0, 0),
    (Laterality.LEFT, View.CC): (0, 1),
    (Laterality.RIGHT, View.MLO): (1, 0),
    (Laterality.LEFT, View.MLO): (1, 1),
}
LIGHT_RGB: Final[dict[str, tuple[int, int, int]]] = {"RED": (200, 30, 30), "YELLOW": (245, 200, 0), "GREEN": (30, 140, 60)}
LIGHT_LABELS: Final[dict[str, str]] = {
    "RED": "SEMÁFORO ROJO / RED",
    "YELLOW": "SEMÁFORO AMARILLO / YELLOW",
    "GREEN": "SEMÁFORO VERDE / GREEN",
}
FOOTER_RGB: Final[tuple[int, int, int]] = (32, 32, 32)
MISSING_RGB: Final[tuple[int, int, int]] = (60, 60, 60)


def view_slot(header: Dataset) -> Slot | None:
    """The mosaic slot of an image from its laterality and projection (any CID 4014 view), or ``None``."""
    return slot_from_dataset(header)


@dataclass(frozen=True)
class ViewTile:
    """A view fitted into its tile, and how stored-image coordinates land on it."""

    image: np.ndarray  # uint8 (rows, cols), at most TILE_ROWS x TILE_COLS
    source_rows: int
    source_columns: int
    flip_lr: bool
    flip_ud: bool

    def to_tile(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """Stored-image (column, row) coordinates (SCOORD convention) as tile pixel coordinates (x, y)."""
        rows, cols = self.image.shape
        scale_x, scale_y = cols / self.source_columns, rows / self.source_rows
        mapped = []
        for column, row in points:
            x, y = column * scale_x, row * scale_y
            mapped.append((cols - x if self.flip_lr else x, rows - y if self.flip_ud else y))
        return mapped


def view_tile(header: Dataset, raw: bytes, slot: Slot) -> ViewTile:
    """One stored view as an 8-bit image hung for ``slot``, fitted inside a tile."""
    pixels = first_grey_frame(header, pixel_array(io.BytesIO(raw), index=0))
    step = max(1, min(pixels.shape[0] // (2 * TILE_ROWS), pixels.shape[1] // (2 * TILE_COLS)))
    image = to_uint8(display_values(header, np.ascontiguousarray(pixels[::step, ::step])))
    flips = hanging_flips(header, slot)
    if flips is None:  # no Patient Orientation: the chest wall must face the middle of the mosaic
        flips = (chest_wall_on_left(image) == (slot[0] == Laterality.RIGHT), False)
    flip_lr, flip_ud = flips
    if flip_lr:
        image = image[:, ::-1]
    if flip_ud:
        image = image[::-1, :]
    return ViewTile(_fit(np.ascontiguousarray(image)), pixels.shape[0], pixels.shape[1], flip_lr, flip_ud)


def display_view(header: Dataset, raw: bytes, slot: Slot) -> np.ndarray:
    """One stored view as an 8-bit image hung for ``slot``, fitted inside a tile (rows, cols)."""
    return view_tile(header, raw, slot).image


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


MARK_RGB: Final[tuple[int, int, int]] = (255, 200, 0)


def render_mosaic(
    views: dict[Slot, np.ndarray],
    light: str,
    model_label: str,
    footer_lines: list[str],
    marks: dict[Slot, list[list[tuple[float, float]]]] | None = None,
) -> np.ndarray:
    """The RGB mosaic (``MOSAIC_ROWS`` x ``MOSAIC_COLS`` x 3, uint8) of up to four fitted views.

    ``views`` maps a slot to the output of :func:`display_view`; a missing slot shows a grey
    "sin imagen / no image" tile. ``model_label`` is the line under the light's name. ``marks``
    are closed outlines in tile coordinates (:meth:`ViewTile.to_tile`), drawn over their view.
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
            x = left + (TILE_COLS - cols if slot[0] == Laterality.RIGHT else 0)
            y = top + (TILE_ROWS - rows) // 2
            canvas.paste(Image.fromarray(image).convert("RGB"), (x, y))
            for outline in (marks or {}).get(slot, []):
                draw.line([(x + px, y + py) for px, py in outline], fill=MARK_RGB, width=2, joint="curve")
        label = f"{slot[0].value} {slot[1].value}"
        label_x = left + 8 if slot[0] == Laterality.RIGHT else left + TILE_COLS - 8 - int(draw.textlength(label, font=_font(18, True)))
        draw.text((label_x, top + 6), label, font=_font(18, True), fill=(255, 255, 255))
    footer_top = HEADER_ROWS + 2 * TILE_ROWS
    draw.rectangle([0, footer_top, MOSAIC_COLS - 1, MOSAIC_ROWS - 1], fill=FOOTER_RGB)
    for index, line in enumerate(footer_lines[:3]):
        _draw_fitted(draw, (10, footer_top + 3 + index * 17), line, 13, MOSAIC_COLS - 20, (235, 235, 235))
    return np.asarray(canvas, dtype=np.uint8)
