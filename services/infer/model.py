"""Two-view (CC + MLO) network for one breast, in the spirit of TwoViewDensityNet.

Both views of a breast go through one shared backbone; the pooled features are
concatenated and fed to three heads: malignancy, BI-RADS and ACR density.
Weights are never downloaded: the backbone is always built with ``weights=None``.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import Tensor, nn
from torchvision.models import efficientnet_b0

MODEL_NAME: Final[str] = "twoview-effb0"
MODEL_VERSION: Final[str] = "0.1.0"

INPUT_HEIGHT: Final[int] = 336
INPUT_WIDTH: Final[int] = 224

BIRADS_CLASSES: Final[tuple[int, ...]] = (0, 1, 2, 3, 4, 5, 6)
#: Orders of the magma channels the backbone can be fed in (BGR: the seed's OpenCV notebooks).
CHANNEL_ORDERS: Final[tuple[str, ...]] = ("RGB", "BGR")
DENSITY_CLASSES: Final[tuple[str, ...]] = ("A", "B", "C", "D")

BACKBONES: Final[tuple[str, ...]] = ("efficientnet_b0", "small_cnn", "compact_cnn")
BACKBONE_MODEL_NAMES: Final[dict[str, str]] = {
    "efficientnet_b0": MODEL_NAME,
    "small_cnn": "twoview-smallcnn",
    "compact_cnn": "twoview-compactcnn",
}

_IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
_IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)


def _small_cnn() -> tuple[nn.Module, int]:
    """A tiny convolutional feature extractor, used where speed matters (tests)."""
    layers: list[nn.Module] = []
    channels = [3, 8, 16, 32]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [
            nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers), channels[-1]


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class CompactCNN(nn.Module):
    """A plain nine-layer CNN (about 0.47 M parameters) that trains on a CPU in minutes.

    Its output is already pooled (``N x 320 x 1 x 1``), so the shared pooling of
    :class:`TwoViewNet` leaves it unchanged: the global maximum of the stride-8 features
    (64 channels: small bright structures such as calcifications or a small mass, wherever
    they are) and the global average and maximum of the stride-32 features (128 + 128:
    diffuse properties such as density, and larger lesions).
    """

    out_channels: Final[int] = 64 + 2 * 128

    def __init__(self) -> None:
        super().__init__()
        self.fine = nn.Sequential(
            *_conv_bn_relu(3, 24, 2), *_conv_bn_relu(24, 32, 2), *_conv_bn_relu(32, 32, 1),
            *_conv_bn_relu(32, 64, 2), *_conv_bn_relu(64, 64, 1),
        )
        self.coarse = nn.Sequential(
            *_conv_bn_relu(64, 96, 2), *_conv_bn_relu(96, 96, 1),
            *_conv_bn_relu(96, 128, 2), *_conv_bn_relu(128, 128, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        fine = self.fine(x)
        coarse = self.coarse(fine)
        return torch.cat(
            [
                fine.amax(dim=(2, 3), keepdim=True),
                coarse.mean(dim=(2, 3), keepdim=True),
                coarse.amax(dim=(2, 3), keepdim=True),
            ],
            dim=1,
        )


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """Return ``(feature_extractor, feature_channels)`` for a backbone name."""
    if name == "efficientnet_b0":
        net = efficientnet_b0(weights=None)
        return net.features, net.classifier[1].in_features
    if name == "small_cnn":
        return _small_cnn()
    if name == "compact_cnn":
        return CompactCNN(), CompactCNN.out_channels
    raise ValueError(f"Backbone desconocido / unknown backbone: {name!r}; use one of {BACKBONES}")


class FeatureDensity(nn.Module):
    """A Gaussian over the backbone features of the training views: mean and (shrunk) precision.

    Its output is the Mahalanobis distance of each view's features, the out-of-distribution score
    on the model's own features; a checkpoint fitted by training says so in its metadata
    (``ood_threshold``). Until fitted it is the Euclidean distance to zero and means nothing.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("precision", torch.eye(dim))

    def forward(self, features: Tensor) -> Tensor:
        """Distance ``N`` of each row of ``features`` (``N x C``) to the training features."""
        centred = features - self.mean
        return torch.sqrt(torch.clamp(((centred @ self.precision) * centred).sum(dim=1), min=0.0))


class TwoViewNet(nn.Module):
    """Breast-level classifier over the CC and MLO views of one breast.

    Inputs are float tensors ``N x 3 x 336 x 224`` scaled to 0..1, RGB as the service writes them;
    ImageNet normalisation happens inside the module. ``channel_order="BGR"`` hands the backbone the
    channels in OpenCV's order, as the seed's notebooks fed it (``cv2.applyColorMap``), so weights
    trained that way see what they were trained on; every export keeps the swap.
    """

    def __init__(
        self, backbone: str = "efficientnet_b0", hidden: int = 256, dropout: float = 0.2, channel_order: str = "RGB"
    ) -> None:
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"Orden de canales desconocido / unknown channel order {channel_order!r}: {CHANNEL_ORDERS}")
        self.backbone_name = backbone
        self.channel_order = channel_order
        self.features, feat_dim = build_backbone(backbone)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Not persistent: constants, so checkpoints stay pure learned weights.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.neck = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * feat_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.malignancy_head = nn.Linear(hidden, 1)
        self.birads_head = nn.Linear(hidden, len(BIRADS_CLASSES))
        self.density_head = nn.Linear(hidden, len(DENSITY_CLASSES))
        self.ood = FeatureDensity(feat_dim)

    def embed(self, images: Tensor) -> Tensor:
        """Pooled backbone features ``N x C`` of a batch of 0..1 images."""
        x = (images - self.mean) / self.std
        if self.channel_order == "BGR":
            x = x.flip(1)
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, cc: Tensor, mlo: Tensor) -> dict[str, Tensor]:
        """Logits for each breast: ``malignancy_logit`` (N), ``birads_logits`` (N x 7),
        ``density_logits`` (N x 4), and ``ood_distance`` (N): the larger of its two views' distances
        to the training features (:class:`FeatureDensity`)."""
        if cc.shape != mlo.shape:
            raise ValueError(f"CC y MLO difieren / CC and MLO differ: {tuple(cc.shape)} vs {tuple(mlo.shape)}")
        n = cc.shape[0]
        # One pass through the shared backbone for both views.
        feats = self.embed(torch.cat([cc, mlo], dim=0))
        joint = self.neck(torch.cat([feats[:n], feats[n:]], dim=1))
        distance = self.ood(feats)
        return {
            "malignancy_logit": self.malignancy_head(joint).squeeze(1),
            "birads_logits": self.birads_head(joint),
            "density_logits": self.density_head(joint),
            "ood_distance": torch.maximum(distance[:n], distance[n:]),
        }
