"""Training augmentation on the model inputs: the grey scale and geometry change, the anatomy does not.

Inputs are magma-coloured (``uint8`` 336 x 224 x 3, exactly :func:`shared.imaging.pipeline.magma`
of a grey image), so each view is turned back into its grey levels, changed, and coloured again
with the same table: the network never sees a colour the service could not produce.

Per view, drawn independently: a window (contrast and brightness) and a gamma, Gaussian noise,
a small affine transform (rotation, scale, shear, shift) with crop jitter, and an up-down flip of
CC views (the chest wall stays on the left edge, as the service orients every view).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from shared.imaging.pipeline import magma


@dataclass(frozen=True)
class Augmentation:
    """How strongly each change is drawn (0 turns it off)."""

    # Mild: the renderings of the data already vary tone curve, bits and noise; stronger grey-level
    # changes blur what a dense breast looks like (density accuracy fell from 0.96 to 0.58 after four
    # epochs of a small run with gamma 0.3, contrast 0.15, brightness 0.08).
    contrast: float = 0.08
    brightness: float = 0.03
    gamma: float = 0.12
    noise: float = 0.015
    rotation_deg: float = 6.0
    scale: float = 0.08
    shift: float = 0.05
    flip_cc: bool = True


@functools.cache
def _inverse_table() -> tuple[np.ndarray, np.ndarray]:
    """A lookup from packed RGB (24 bits) to the grey level of that magma colour (-1: not a magma colour)."""
    table = magma(np.arange(256, dtype=np.uint8)[None, :])[0].astype(np.int64)
    lookup = np.full(1 << 24, -1, dtype=np.int16)
    lookup[(table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]] = np.arange(256)
    return lookup, table


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """The grey levels (``uint8``) a magma-coloured image was made from; nearest level for other colours."""
    lookup, table = _inverse_table()
    keys = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    levels = lookup[keys]
    unknown = levels < 0
    if unknown.any():
        colours = rgb[unknown].astype(np.int64)
        levels[unknown] = np.argmin(((colours[:, None, :] - table[None, :, :]) ** 2).sum(axis=2), axis=1)
    return levels.astype(np.uint8)


def _affine_parameters(shape: tuple[int, int], rng: np.random.Generator, aug: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = shape
    angle = np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
    zoom = 1.0 + rng.uniform(-aug.scale, aug.scale)
    shear = rng.uniform(-0.03, 0.03)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) / zoom
    centre = np.array([rows / 2.0, cols / 2.0])
    # Shift along the rows; columns only a little, so the chest wall stays at the left edge.
    shift = np.array([rng.uniform(-aug.shift, aug.shift) * rows, rng.uniform(0.0, aug.shift / 2) * cols])
    return matrix, centre - matrix @ centre + shift


def augment_view(
    rgb: np.ndarray, rng: np.random.Generator, aug: Augmentation, view: str, lesions: np.ndarray | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One augmented magma input (``uint8`` 336 x 224 x 3) of a ``CC`` or ``MLO`` view.

    With ``lesions`` (the view's lesion map on a coarser grid) the map gets the same geometric changes
    and ``(input, map)`` is returned.
    """
    grey = grey_of(rgb).astype(np.float32) / 255.0
    breast = grey > 0.0
    if aug.gamma:
        grey = grey ** np.float32(np.exp(rng.uniform(-aug.gamma, aug.gamma)))
    if aug.contrast or aug.brightness:
        grey = grey * np.float32(1.0 + rng.uniform(-aug.contrast, aug.contrast)) + np.float32(
            rng.uniform(-aug.brightness, aug.brightness)
        )
    if aug.noise:
        grey = grey + rng.normal(0.0, rng.uniform(0.0, aug.noise), grey.shape).astype(np.float32)
    grey = np.where(breast, np.clip(grey, 0.0, 1.0), 0.0).astype(np.float32)
    if aug.rotation_deg or aug.scale or aug.shift:
        matrix, offset = _affine_parameters(grey.shape, rng, aug)
        grey = ndimage.affine_transform(grey, matrix, offset=offset, order=1, mode="constant", cval=0.0)
        if lesions is not None:
            factor = grey.shape[0] / lesions.shape[0]
            lesions = ndimage.affine_transform(lesions, matrix, offset=offset / factor, order=1, mode="constant", cval=0.0)
    if aug.flip_cc and view == "CC" and rng.random() < 0.5:
        grey = grey[::-1]
        if lesions is not None:
            lesions = lesions[::-1]
    out = magma(np.clip(grey, 0.0, 1.0))
    return out if lesions is None else (out, np.ascontiguousarray(lesions))


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, aug: Augmentation, lesions: np.ndarray | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Augment a batch ``B x 2 x 336 x 224 x 3`` (CC then MLO), each view drawn on its own; with
    ``lesions`` (``B x 2 x h x w``) the maps follow their views and both are returned."""
    out = np.empty_like(images)
    maps = None if lesions is None else np.empty_like(lesions)
    for i in range(images.shape[0]):
        for j, view in enumerate(("CC", "MLO")):
            if maps is None:
                out[i, j] = augment_view(images[i, j], rng, aug, view)  # type: ignore[assignment]
            else:
                assert lesions is not None
                out[i, j], maps[i, j] = augment_view(images[i, j], rng, aug, view, lesions[i, j])  # type: ignore[misc]
    return out if maps is None else (out, maps)


__all__ = ["Augmentation", "augment_batch", "augment_view", "grey_of"]
