"""Save and load TwoViewNet checkpoints: a state_dict plus a metadata dict."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import torch

from services.infer.model import TwoViewNet

REQUIRED_METADATA: Final[tuple[str, ...]] = ("model_name", "version", "trained_on", "backbone")
#: Weights a checkpoint written before the out-of-distribution check existed does not have.
_OPTIONAL_PREFIXES: Final[tuple[str, ...]] = ("ood.",)


def save_checkpoint(model: TwoViewNet, path: Path, metadata: Mapping[str, str]) -> None:
    """Write ``model``'s weights and ``metadata`` to ``path``.

    ``backbone`` is filled from the model when missing; the other required keys
    (model_name, version, trained_on) must be given. The file is written to a
    temporary name first so a reader never sees half a checkpoint.
    """
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta.setdefault("backbone", model.backbone_name)
    meta.setdefault("channel_order", model.channel_order)
    if meta["backbone"] != model.backbone_name:
        raise ValueError(f"backbone {meta['backbone']!r} != modelo / model {model.backbone_name!r}")
    missing = [k for k in REQUIRED_METADATA if not meta.get(k)]
    if missing:
        raise ValueError(f"Faltan metadatos / missing metadata: {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "metadata": meta}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read ``(state_dict, metadata)`` from ``path`` (tensors only, no pickled code)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "metadata" not in payload:
        raise ValueError(f"Checkpoint inválido / invalid checkpoint: {path}")
    meta = {str(k): str(v) for k, v in payload["metadata"].items()}
    missing = [k for k in REQUIRED_METADATA if not meta.get(k)]
    if missing:
        raise ValueError(f"Faltan metadatos / missing metadata in {path}: {missing}")
    return payload["state_dict"], meta


def model_from_checkpoint(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> TwoViewNet:
    """A TwoViewNet (eval mode, CPU) with the checkpoint's weights.

    Every learned weight must match. Only the feature statistics of the out-of-distribution check
    may be absent (checkpoints older than it); such a model has no ``ood_threshold`` and cannot
    vouch that an image is like its training data.
    """
    model = TwoViewNet(backbone=metadata["backbone"], channel_order=metadata.get("channel_order", "RGB"))
    result = model.load_state_dict(dict(state_dict), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_OPTIONAL_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"El checkpoint no corresponde al modelo / checkpoint does not match the model: "
            f"faltan / missing {missing}, sobran / unexpected {list(result.unexpected_keys)}"
        )
    return model.eval()


def ood_threshold(metadata: Mapping[str, str]) -> float | None:
    """The calibrated distance above which a view is out of distribution, if the checkpoint has one."""
    value = metadata.get("ood_threshold")
    return float(value) if value not in (None, "") else None
