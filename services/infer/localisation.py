"""Where the model looked: a class activation map of the malignancy head, turned into outlined regions.

For a breast the model does not call low suspicion, the positive gradient of its malignancy logit
with respect to the backbone's last fine feature map weighs that map location by location
(LayerCAM, Jiang et al. 2021, the form of Grad-CAM that suits max-pooled features: the evidence
sits where each channel peaks); the sum over channels, upsampled to the model input and limited
to the breast, is the activation map of each view. Its strongest connected areas above :data:`REGION_LEVEL` of the
peak become regions: a closed outline and a centre, mapped back onto the stored image with the
view's :class:`~shared.events.ViewGeometry` (crop, mirroring). The regions show what drove the
score; they are not a detection validated as a lesion.

The network is copied once, so that the hooks and gradients here never touch the copy that
serves predictions; calls are serialised by a lock.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours
from torch import nn

from shared.events import ImageRegion, ViewGeometry
from services.infer.model import INPUT_HEIGHT, INPUT_WIDTH, CompactCNN, TwoViewNet

#: Fraction of the activation peak above which a pixel belongs to a region.
REGION_LEVEL: Final[float] = 0.5
#: Regions per view, strongest first.
MAX_REGIONS_PER_VIEW: Final[int] = 2
#: Smallest region kept, as a fraction of the model input's area.
MIN_REGION_FRACTION: Final[float] = 0.0005
#: Pixels of the model input whose three channels sum below this are background (black outside the breast).
_BACKGROUND_SUM: Final[float] = 0.08
#: Smoothing of the activation map before regions are drawn (Gaussian sigma, model-input pixels):
#: about half a feature cell, so that one lesion gives one region.
_SMOOTHING_SIGMA: Final[float] = 4.0
#: Outline simplification tolerance, in model-input pixels.
_OUTLINE_TOLERANCE: Final[float] = 1.0


@dataclass(frozen=True)
class ViewInput:
    """One view of a breast as the model saw it, and where it came from."""

    sop_instance_uid: str
    view: str  # "CC" or "MLO"
    image: np.ndarray  # float32 (336, 224, 3) in 0..1
    geometry: ViewGeometry


def _cam_layers(model: TwoViewNet) -> list[nn.Module]:
    """The feature maps Grad-CAM weighs: the last spatial map(s) of the backbone."""
    features = model.features
    if isinstance(features, CompactCNN):
        return [features.fine]  # stride 8: the features whose maxima carry small lesions to the heads
    if isinstance(features, nn.Sequential):
        return [list(features.children())[-1]]
    raise TypeError(f"Sin mapa de activación para / no activation map for {type(features).__name__}")


class Localiser:
    """Computes activation maps and regions with a private copy of a TwoViewNet (CPU or GPU)."""

    def __init__(self, model: TwoViewNet) -> None:
        self._model = copy.deepcopy(model).eval()
        for parameter in self._model.parameters():
            parameter.requires_grad_(False)
        self._device = next(self._model.parameters()).device
        self._lock = threading.Lock()

    def activation_maps(self, cc: np.ndarray, mlo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Activation maps of the malignancy logit for the CC and the MLO input of one breast, each (336, 224) in 0..1."""
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            output.retain_grad()
            captured.append(output)

        with self._lock:
            handles = [layer.register_forward_hook(keep) for layer in _cam_layers(self._model)]
            try:
                batch = torch.from_numpy(np.stack([cc, mlo])).permute(0, 3, 1, 2).contiguous().to(self._device)
                with torch.enable_grad():
                    batch.requires_grad_(True)  # gradients flow through the frozen network to the maps
                    out = self._model(batch[:1], batch[1:])
                    out["malignancy_logit"].sum().backward()
            finally:
                for handle in handles:
                    handle.remove()
            maps = []
            for activation in captured:
                assert activation.grad is not None
                cam = torch.relu((torch.relu(activation.grad) * activation).sum(dim=1, keepdim=True))
                cam = nn.functional.interpolate(cam, size=(INPUT_HEIGHT, INPUT_WIDTH), mode="bilinear", align_corners=False)
                peak = cam.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
                maps.append((cam / peak).detach())
            combined = torch.stack(maps).mean(dim=0)[:, 0].cpu().numpy()
        return _normalised(combined[0]), _normalised(combined[1])

    def regions(self, laterality: str, views: list[ViewInput]) -> list[ImageRegion]:
        """The regions of one breast's views (one or two of them), mapped onto their stored images."""
        if not views:
            return []
        cc = next((v for v in views if v.view == "CC"), views[0])
        mlo = next((v for v in views if v.view == "MLO"), views[0])
        cc_map, mlo_map = self.activation_maps(cc.image, mlo.image)
        found: list[ImageRegion] = []
        for view, cam in [(cc, cc_map)] if cc is mlo else [(cc, cc_map), (mlo, mlo_map)]:
            breast = view.image.sum(axis=2) > _BACKGROUND_SUM
            smoothed = ndimage.gaussian_filter(np.where(breast, cam, 0.0), _SMOOTHING_SIGMA)
            for center, outline, activation in regions_of(smoothed):
                found.append(
                    ImageRegion(
                        sop_instance_uid=view.sop_instance_uid,
                        laterality=laterality,  # type: ignore[arg-type]
                        view=view.view,  # type: ignore[arg-type]
                        center=to_image(view.geometry, [center])[0],
                        outline=to_image(view.geometry, outline),
                        activation=round(activation, 4),
                    )
                )
        return found


def _normalised(cam: np.ndarray) -> np.ndarray:
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def regions_of(cam: np.ndarray) -> list[tuple[tuple[float, float], list[tuple[float, float]], float]]:
    """The strongest areas of an activation map: (centre, closed outline, peak), in input pixels (x, y)."""
    peak = float(cam.max())
    if peak <= 0:
        return []
    labels, count = ndimage.label(cam >= REGION_LEVEL * peak)
    found = []
    for index in range(1, count + 1):
        component = labels == index
        if component.sum() < MIN_REGION_FRACTION * cam.size:
            continue
        strength = float(cam[component].max())
        weights = np.where(component, cam, 0.0)
        row, col = ndimage.center_of_mass(weights)
        contour = max(find_contours(np.pad(component, 1).astype(np.float32), 0.5), key=len) - 1.0
        simplified = approximate_polygon(contour, tolerance=_OUTLINE_TOLERANCE)
        points = [(float(c), float(r)) for r, c in simplified]
        if points[0] != points[-1]:
            points.append(points[0])
        if len(points) >= 4:
            found.append(((float(col), float(row)), points, strength / peak))
    found.sort(key=lambda item: -item[2])
    return found[:MAX_REGIONS_PER_VIEW]


def to_image(geometry: ViewGeometry, points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Model-input pixel indices (x, y) as stored-image coordinates (column, row): undo the resize,
    the crop and the mirroring. Image coordinates follow DICOM SCOORD: (0, 0) is the top-left corner
    of the top-left pixel, so the centre of pixel (i, j) is (i + 0.5, j + 0.5)."""
    scale_x = (geometry.right - geometry.left) / INPUT_WIDTH
    scale_y = (geometry.bottom - geometry.top) / INPUT_HEIGHT
    mapped = []
    for x, y in points:
        column = geometry.left + (x + 0.5) * scale_x
        row = geometry.top + (y + 0.5) * scale_y
        if geometry.mirrored:
            column = geometry.columns - column
        mapped.append((round(min(max(column, 0.0), float(geometry.columns)), 2), round(min(max(row, 0.0), float(geometry.rows)), 2)))
    return mapped
