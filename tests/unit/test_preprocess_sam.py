"""The SAM backend end to end with a randomly initialised vit_b, and its startup errors.

No official weights exist on these machines, so the masks are meaningless; what is checked is the
wiring: SAM sees the view at its 1024 side, is prompted with the classic mask's centroid and box,
and hands back a boolean mask of the image's shape. One SAM forward for the whole module.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
from segment_anything import sam_model_registry

from services.preprocess.__main__ import register
from shared.imaging.display import to_display
from shared.imaging.pipeline import PreprocessedView, orient, preprocess_view
from shared.imaging.sam import SAM_INPUT_SIDE, SamPrompt, SamSegmenter, SamSetupError, prompt_from_mask
from shared.imaging.segmentation import ClassicSegmenter, build_segmenter
from shared.runtime import build_context
from shared.settings import Settings
from shared.synth import make_view

ROWS, COLS = 1280, 1040  # larger than SAM's side, so the view is shrunk once before SAM


@dataclass
class SamRun:
    """One SAM forward through the pipeline and what SAM was given."""

    result: PreprocessedView
    classic_mask: np.ndarray
    images: list[np.ndarray] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def sam_run() -> SamRun:
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    segmenter = SamSegmenter(model=sam_model_registry["vit_b"](checkpoint=None))
    predictor = segmenter.predictor
    set_image, predict = predictor.set_image, predictor.predict
    view = make_view(laterality="R", view="MLO", rows=ROWS, cols=COLS, seed=41, density=0.4)
    ds = pydicom.dcmread(io.BytesIO(view.to_bytes()))
    run = SamRun(
        result=PreprocessedView(None, None, np.empty(0), np.empty(0), np.empty(0), np.empty(0), 0.0, (0, 0, 0, 0)),
        classic_mask=ClassicSegmenter().segment(orient(to_display(ds), "R"), "MLO").breast_mask,
    )

    def recording_set_image(image: np.ndarray, image_format: str = "RGB") -> None:
        run.images.append(image.copy())
        set_image(image, image_format)

    def recording_predict(**kwargs: Any) -> Any:
        run.prompts.append(kwargs)
        return predict(**kwargs)

    predictor.set_image = recording_set_image  # type: ignore[method-assign]
    predictor.predict = recording_predict  # type: ignore[method-assign]
    try:
        run.result = preprocess_view(ds, segmenter)
    finally:
        torch.set_num_threads(threads)
    return run


def test_sam_mask_is_boolean_and_shaped_like_the_image(sam_run: SamRun) -> None:
    result = sam_run.result
    assert result.segmentation_backend == "sam"
    assert result.mask.shape == (ROWS, COLS) and result.mask.dtype == np.bool_
    assert result.pectoral_mask is not None and result.pectoral_mask.shape == (ROWS, COLS)
    assert not (result.pectoral_mask & ~result.mask).any()
    assert result.model_input.shape == (336, 224, 3) and result.model_input.dtype == np.float32


def test_sam_sees_the_view_once_at_its_input_side(sam_run: SamRun) -> None:
    assert len(sam_run.images) == 1 and len(sam_run.prompts) == 1
    image = sam_run.images[0]
    assert max(image.shape[:2]) == SAM_INPUT_SIDE and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] / image.shape[1] == pytest.approx(ROWS / COLS, rel=0.01)


def test_sam_is_prompted_at_the_classic_centroid_and_box(sam_run: SamRun) -> None:
    prompt = sam_run.prompts[0]
    scale = SAM_INPUT_SIDE / ROWS
    rows, cols = np.nonzero(sam_run.classic_mask)
    centroid_xy = np.array([cols.mean(), rows.mean()]) * scale
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()]) * scale

    assert np.allclose(prompt["point_coords"], [centroid_xy], atol=0.5)
    assert prompt["point_labels"].tolist() == [1]
    assert np.allclose(prompt["box"], box, atol=0.5)
    assert prompt["multimask_output"] is False


def test_prompt_point_stays_on_a_concave_mask() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[:, :6] = True
    mask[:6, :] = True  # an L: its centroid falls outside
    prompt = prompt_from_mask(mask)
    assert prompt is not None
    x, y = prompt.point_xy
    assert mask[int(y), int(x)]
    assert prompt.box_xyxy == (0.0, 0.0, 39.0, 39.0)
    assert prompt_from_mask(np.zeros((4, 4), dtype=bool)) is None
    assert SamPrompt((2.0, 4.0), (0.0, 0.0, 8.0, 8.0)).scaled(0.5) == SamPrompt((1.0, 2.0), (0.0, 0.0, 4.0, 4.0))


def test_missing_checkpoint_is_a_startup_error(settings: Settings) -> None:
    sam_settings = settings.model_copy(update={"segmentation_backend": "sam", "sam_checkpoint": None})
    ctx = build_context(sam_settings)
    with pytest.raises(SamSetupError, match="MDD_SAM_CHECKPOINT") as error:
        register(ctx)
    message = str(error.value)
    assert "sam_vit_b_01ec64.pth" in message and "Descargue" in message and "download" in message
    ctx.engine.dispose()


def test_checkpoint_path_that_does_not_exist(tmp_path: Path) -> None:
    settings = Settings(segmentation_backend="sam", sam_model_type="vit_l", sam_checkpoint=tmp_path / "nada.pth")
    with pytest.raises(SamSetupError, match="nada.pth.*sam_vit_l_0b3195.pth"):
        build_segmenter(settings)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "otro.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 2, 2, 3)}, wrong)
    with pytest.raises(SamSetupError, match="No se pudo cargar.*SAM vit_b"):
        SamSegmenter("vit_b", wrong)


def test_cuda_without_a_gpu_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"not read: the device is checked first")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SamSetupError, match="MDD_SAM_DEVICE=cpu"):
        SamSegmenter("vit_b", checkpoint, device="cuda")
