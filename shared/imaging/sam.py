"""Backend ``sam``: Segment Anything prompted by the classic mask, as the seed did.

The classic mask gives the prompts: its centroid as a positive point (the seed's
findCentroid → SAM) and its bounding box. SAM sees the view shrunk so its longest side is
1024 pixels (its own input size) and its mask is scaled back to the image. The pectoral muscle
still comes from the classic backend, kept where SAM says there is breast.

The official checkpoints are not shipped; see docs/preprocessing.md. A missing, unreadable or
mismatched checkpoint raises :class:`SamSetupError` when the segmenter is built, that is when the
preprocess service starts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from shared.errors import ConfigurationError
from shared.imaging.segmentation import ClassicSegmenter, SegmentationResult, upsample_mask

#: Longest side SAM works at (ResizeLongestSide(1024) in segment-anything).
SAM_INPUT_SIDE: Final[int] = 1024
#: Official checkpoint file of each model type, from the Segment Anything release.
OFFICIAL_CHECKPOINTS: Final[dict[str, str]] = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
_HOW_TO_INSTALL: Final[str] = (
    "Descargue el checkpoint oficial de Segment Anything ({file}) en otra computadora, cópielo a este "
    "servidor y defina MDD_SAM_CHECKPOINT=/ruta/{file} (o use MDD_SEGMENTATION_BACKEND=classic); "
    "vea docs/preprocessing.md / download the official Segment Anything checkpoint ({file}) on another "
    "machine, copy it here and set MDD_SAM_CHECKPOINT=/path/{file} (or use MDD_SEGMENTATION_BACKEND=classic); "
    "see docs/preprocessing.md."
)


class SamSetupError(ConfigurationError):
    """The SAM backend cannot start: no checkpoint, an unreadable one, or an unusable device."""


@dataclass(frozen=True)
class SamPrompt:
    """Prompts for SAM in (x, y) = (column, row) pixel coordinates of the image they were made on."""

    point_xy: tuple[float, float]
    box_xyxy: tuple[float, float, float, float]

    def scaled(self, scale: float) -> SamPrompt:
        """The same prompts on an image ``scale`` times the size."""
        x, y = self.point_xy
        return SamPrompt((x * scale, y * scale), tuple(v * scale for v in self.box_xyxy))  # type: ignore[arg-type]


def prompt_from_mask(mask: np.ndarray) -> SamPrompt | None:
    """Centroid (a positive point) and bounding box of ``mask``; ``None`` for an empty mask.

    When the centroid falls outside the mask (a concave outline) the point moves to the mask
    pixel farthest from its edge, so the positive point is always on the breast.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    r, c = float(rows.mean()), float(cols.mean())
    if not mask[round(r), round(c)]:
        distance = ndimage.distance_transform_edt(mask)
        r, c = (float(v) for v in np.unravel_index(int(np.argmax(distance)), mask.shape))
    box = (float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max()))
    return SamPrompt(point_xy=(c, r), box_xyxy=box)


def _check_checkpoint(model_type: str, checkpoint: Path | None) -> Path:
    file = OFFICIAL_CHECKPOINTS.get(model_type, "sam_*.pth")
    if checkpoint is None:
        raise SamSetupError(
            "MDD_SEGMENTATION_BACKEND=sam necesita MDD_SAM_CHECKPOINT / the sam backend needs a checkpoint. "
            + _HOW_TO_INSTALL.format(file=file)
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise SamSetupError(
            f"No existe el checkpoint de SAM / SAM checkpoint not found: {path}. " + _HOW_TO_INSTALL.format(file=file)
        )
    return path


def _check_device(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise SamSetupError(f"MDD_SAM_DEVICE inválido / invalid SAM device: {device!r}") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise SamSetupError(
            f"MDD_SAM_DEVICE={device} pero no hay GPU CUDA disponible; use MDD_SAM_DEVICE=cpu / "
            "no CUDA GPU is available; set MDD_SAM_DEVICE=cpu"
        )
    return target


def load_sam(model_type: str, checkpoint: Path | None, device: str = "cpu") -> torch.nn.Module:
    """Build a SAM model of ``model_type`` with the official weights at ``checkpoint`` on ``device``.

    Raises :class:`SamSetupError` with what to do when anything is missing or wrong.
    """
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry or model_type == "default":
        raise SamSetupError(f"MDD_SAM_MODEL_TYPE desconocido / unknown SAM model type: {model_type!r}")
    path = _check_checkpoint(model_type, checkpoint)
    target = _check_device(device)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = sam_model_registry[model_type](checkpoint=None)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling, truncated file, or weights of another model type
        raise SamSetupError(
            f"No se pudo cargar {path} como SAM {model_type} / could not load it as SAM {model_type}: {exc}. "
            + _HOW_TO_INSTALL.format(file=OFFICIAL_CHECKPOINTS[model_type])
        ) from exc
    return model.to(target).eval()


class SamSegmenter:
    """Segment Anything prompted with the classic mask's centroid and bounding box.

    Give ``model`` to use an already built SAM (tests pass a randomly initialised ``vit_b``);
    otherwise the official weights are loaded from ``checkpoint`` now.
    """

    name = "sam"

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: Path | None = None,
        device: str = "cpu",
        *,
        model: torch.nn.Module | None = None,
    ) -> None:
        from segment_anything import SamPredictor

        if model is None:
            model = load_sam(model_type, checkpoint, device)
        self.predictor = SamPredictor(model.eval())
        self.prompt_segmenter = ClassicSegmenter()
        # SamPredictor keeps the current image's embedding: one view at a time.
        self._lock = threading.Lock()

    def _sam_mask(self, image01: np.ndarray, prompt: SamPrompt) -> np.ndarray:
        rows, cols = image01.shape
        scale = min(1.0, SAM_INPUT_SIDE / max(rows, cols))
        grey = np.rint(np.clip(image01, 0.0, 1.0) * 255.0).astype(np.uint8)
        if scale < 1.0:
            size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
            grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR))
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        small = prompt.scaled(grey.shape[1] / cols)
        with self._lock, torch.inference_mode():
            self.predictor.set_image(rgb, image_format="RGB")
            masks, _, _ = self.predictor.predict(
                point_coords=np.array([small.point_xy], dtype=np.float32),
                point_labels=np.array([1]),
                box=np.array(small.box_xyxy, dtype=np.float32),
                multimask_output=False,
            )
            self.predictor.reset_image()
        # Holes are filled at SAM's size: much cheaper than on a full-field image.
        mask = ndimage.binary_fill_holes(np.asarray(masks[0], dtype=bool))
        return upsample_mask(mask, (rows, cols)) if mask.shape != (rows, cols) else mask

    def segment(self, image01: np.ndarray, view: str | None) -> SegmentationResult:
        """Segment an oriented display image; an empty classic mask leaves nothing to prompt with."""
        classic = self.prompt_segmenter.segment(image01, view)
        prompt = prompt_from_mask(classic.breast_mask)
        if prompt is None:
            return classic
        breast = self._sam_mask(image01, prompt)
        return SegmentationResult(breast_mask=breast, pectoral_mask=classic.pectoral_mask & breast)


__all__ = [
    "OFFICIAL_CHECKPOINTS",
    "SAM_INPUT_SIDE",
    "SamPrompt",
    "SamSegmenter",
    "SamSetupError",
    "load_sam",
    "prompt_from_mask",
]
