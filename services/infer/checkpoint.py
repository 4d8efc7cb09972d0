"""Save and load TwoViewNet checkpoints: a state_dict plus a metadata dict."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import torch

from services.infer.model import TwoViewNet

REQUIRED_METADATA: Final[tuple[str, ...]] = ("model_name", "version", "trained_on", "backbone")


def save_checkpoint(model: TwoViewNet, path: Path, metadata: Mapping[str, str]) -> None:
    """Write ``model``'s weights and ``metadata`` to ``path``.

    ``backbone`` is filled from the model when missing; the other required keys
    (model_name, version, trained_on) must be given. The file is written to a
    temporary name first so a reader never sees half a checkpoint.
    """
    meta = {str(k): str(v) for k, v in metadata.items()}
    meta.setdefault("backbone", model.backbone_name)
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
