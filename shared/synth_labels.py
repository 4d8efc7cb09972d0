"""Estudios sintéticos etiquetados / labelled synthetic studies for training and evaluation.

Extends :mod:`shared.synth` (same anatomy, noise, DICOM tags and orientation convention) with
findings of a benign or suspicious appearance and the labels a radiologist would give them:

=============================  ========================================================  =======  ==========
appearance                     what is painted                                           BI-RADS  malignancy
=============================  ========================================================  =======  ==========
``normal``                     nothing                                                   1        0
``benign_mass``                oval mass, sharp circumscribed margin, thin dark halo     2        0
``benign_calcifications``      a few coarse, round, scattered calcifications             2        0
``probably_benign_mass``       small oval mass, circumscribed, slightly lobulated        3        0
``suspicious_mass``            irregular lobulated mass (the ``mass`` of shared.synth)   4        1
``suspicious_calcifications``  tight cluster of fine dots (``calcifications`` of synth)  4        1
``spiculated_mass``            irregular mass with radiating spicules                    5        1
``linear_calcifications``      fine calcifications along branching lines                 5        1
=============================  ========================================================  =======  ==========

The ACR density category comes from the fibroglandular fraction (:func:`density_category`).
Everything is reproducible from an integer seed; a ``suspicious_mass`` or
``suspicious_calcifications`` view is byte-identical to :func:`shared.synth.make_view` with
``finding="mass"`` / ``"calcifications"`` and the same arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np

from shared import synth
from shared.synth import (
    Finding,
    Laterality,
    Photometric,
    StudyIdentity,
    SyntheticStudy,
    SyntheticView,
    View,
    study_identity,
)

Appearance = Literal[
    "normal",
    "benign_mass",
    "benign_calcifications",
    "probably_benign_mass",
    "suspicious_mass",
    "suspicious_calcifications",
    "spiculated_mass",
    "linear_calcifications",
]
DensityCategory = Literal["A", "B", "C", "D"]

APPEARANCES: Final[tuple[str, ...]] = get_args(Appearance)
#: BI-RADS category of each appearance (1 normal, 2 benign, 3 probably benign, 4 suspicious, 5 highly suggestive).
APPEARANCE_BIRADS: Final[dict[str, int]] = {
    "normal": 1,
    "benign_mass": 2,
    "benign_calcifications": 2,
    "probably_benign_mass": 3,
    "suspicious_mass": 4,
    "suspicious_calcifications": 4,
    "spiculated_mass": 5,
    "linear_calcifications": 5,
}
#: Share of each appearance among the studies drawn by :func:`sample_case` (the other breast is normal).
APPEARANCE_WEIGHTS: Final[dict[str, float]] = {
    "normal": 0.30,
    "benign_mass": 0.10,
    "benign_calcifications": 0.08,
    "probably_benign_mass": 0.08,
    "suspicious_mass": 0.13,
    "suspicious_calcifications": 0.11,
    "spiculated_mass": 0.10,
    "linear_calcifications": 0.10,
}
#: Upper bounds of the fibroglandular fraction of ACR categories A, B and C (D is the rest).
DENSITY_BOUNDS: Final[tuple[float, float, float]] = (0.25, 0.50, 0.75)
DENSITY_CATEGORIES: Final[tuple[str, ...]] = ("A", "B", "C", "D")
#: Sampled fractions keep this distance from the category bounds, so every label is unambiguous.
DENSITY_MARGIN: Final[float] = 0.03

_STANDARD_VIEWS: Final[tuple[tuple[Laterality, View], ...]] = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def birads_of(appearance: str) -> int:
    """BI-RADS category of an appearance (1-5)."""
    if appearance not in APPEARANCE_BIRADS:
        raise ValueError(f"apariencia desconocida / unknown appearance {appearance!r}: {APPEARANCES}")
    return APPEARANCE_BIRADS[appearance]


def malignancy_of_birads(birads: int) -> int:
    """Malignancy label of a BI-RADS category: 1 for 4, 5 and 6, otherwise 0."""
    return 1 if birads >= 4 else 0


def density_category(fraction: float) -> DensityCategory:
    """ACR density (A-D) of a fibroglandular fraction: A < 0.25 ≤ B < 0.50 ≤ C < 0.75 ≤ D."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("la fracción debe estar entre 0 y 1 / fraction must be within 0..1")
    for category, bound in zip(DENSITY_CATEGORIES, DENSITY_BOUNDS):
        if fraction < bound:
            return category  # type: ignore[return-value]
    return "D"


@dataclass(frozen=True)
class BreastLabel:
    """Ground truth of one breast of a labelled study."""

    laterality: Laterality
    appearance: str
    birads: int
    malignancy: int
    density: DensityCategory
    density_fraction: float

    @property
    def finding(self) -> str:
        """``mass``, ``calcification`` or an empty string, as the training manifest writes it."""
        if self.appearance.endswith("mass"):
            return "mass"
        if self.appearance.endswith("calcifications"):
            return "calcification"
        return ""


@dataclass(frozen=True)
class CaseSpec:
    """What one labelled study shows: the finding's appearance and side, and the density."""

    seed: int
    appearance: str
    finding_laterality: Laterality
    density_fraction: float
    photometric: Photometric = "MONOCHROME2"
    rows: int = 512
    cols: int = 416

    def labels(self) -> list[BreastLabel]:
        """Ground truth of both breasts, right then left."""
        out = []
        for side in ("R", "L"):
            appearance = self.appearance if side == self.finding_laterality else "normal"
            birads = birads_of(appearance)
            out.append(
                BreastLabel(
                    laterality=side,  # type: ignore[arg-type]
                    appearance=appearance,
                    birads=birads,
                    malignancy=malignancy_of_birads(birads),
                    density=density_category(self.density_fraction),
                    density_fraction=self.density_fraction,
                )
            )
        return out


@dataclass
class LabelledStudy:
    """A four-view synthetic study with the ground truth of each breast."""

    spec: CaseSpec
    study: SyntheticStudy
    labels: list[BreastLabel]

    def label(self, laterality: str) -> BreastLabel:
        """The label of the ``R`` or ``L`` breast."""
        return next(lab for lab in self.labels if lab.laterality == laterality)


def sample_case(seed: int, *, vary_acquisition: bool = True) -> CaseSpec:
    """Draw the content of study ``seed``: appearance, side, density and acquisition.

    The density category is drawn uniformly, then a fraction inside it (away from the bounds by
    :data:`DENSITY_MARGIN`). With ``vary_acquisition`` a fifth of the studies are MONOCHROME1
    and the matrix size varies a little around 512 x 416.
    """
    rng = np.random.default_rng([seed, 0x1ABE1])
    names = list(APPEARANCE_WEIGHTS)
    weights = np.array([APPEARANCE_WEIGHTS[n] for n in names])
    appearance = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    side: Laterality = "R" if rng.random() < 0.5 else "L"
    category = int(rng.integers(4))
    lows = (0.0, *DENSITY_BOUNDS)
    highs = (*DENSITY_BOUNDS, 1.0)
    lo = max(0.04, lows[category] + DENSITY_MARGIN)
    hi = min(0.96, highs[category] - DENSITY_MARGIN)
    fraction = round(float(rng.uniform(lo, hi)), 4)
    photometric: Photometric = "MONOCHROME2"
    rows, cols = 512, 416
    if vary_acquisition:
        photometric = "MONOCHROME1" if rng.random() < 0.2 else "MONOCHROME2"
        rows = int(rng.choice([480, 512, 544]))
        cols = int(round(rows * 416 / 512))
    return CaseSpec(seed, appearance, side, fraction, photometric, rows, cols)


# --- painting ---------------------------------------------------------------------------------


def _place(rng: np.random.Generator, room: np.ndarray, reach: float) -> tuple[int, int]:
    """A centre whose distance to skin, muscle and edges exceeds ``reach`` (or the roomiest spot)."""
    candidates = np.flatnonzero(room > reach)
    if candidates.size == 0:
        candidates = np.flatnonzero(room >= 0.8 * room.max())
    return divmod(int(candidates[rng.integers(candidates.size)]), room.shape[1])  # type: ignore[return-value]


def _window(values: np.ndarray, center: tuple[int, int], half: int) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Slices of a square window around ``center`` and its row/column offsets from the centre."""
    rows, cols = values.shape
    cr, cc = center
    r0, r1 = max(0, cr - half), min(rows, cr + half + 1)
    c0, c1 = max(0, cc - half), min(cols, cc + half + 1)
    rr = np.arange(r0, r1, dtype=np.float32)[:, None] - cr
    ccol = np.arange(c0, c1, dtype=np.float32)[None, :] - cc
    return slice(r0, r1), slice(c0, c1), rr, ccol


def _blend_mass(patch: np.ndarray, profile: np.ndarray, level: float) -> None:
    """Raise ``patch`` towards a dense mass where ``profile`` (0..1) is positive, in place."""
    target = np.maximum(patch, level + 200.0 * profile)
    patch += profile * (target - patch)


def _oval_mass(
    rng: np.random.Generator, values: np.ndarray, room: np.ndarray, radius: int, lobulation: float, halo: bool
) -> Finding:
    """A circumscribed oval mass (sharp margin), optionally lobulated and with a radiolucent halo."""
    scale = min(values.shape) / 416.0
    center = _place(rng, room, 1.8 * radius + 6 * scale + 4)
    rs, cs, rr, ccol = _window(values, center, 2 * radius + 4)
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(1.0, 1.5)
    u = rr * np.cos(angle) + ccol * np.sin(angle)
    v = -rr * np.sin(angle) + ccol * np.cos(angle)
    rho = np.sqrt((u / aspect) ** 2 + v * v) * np.float32(np.sqrt(aspect))  # same area as a disk
    theta = np.arctan2(v, u)
    edge = radius * (1.0 + synth._wobble(rng, theta, lobulation, 3))
    patch = values[rs, cs]
    if halo:
        ring = np.clip(1.0 - np.abs(rho - edge - 1.5 * max(1.0, scale)) / max(1.0, scale), 0.0, 1.0)
        patch -= ring * 0.25 * patch
    profile = np.clip((edge - rho) / max(1.0, 0.05 * radius), 0.0, 1.0)
    _blend_mass(patch, profile, 2950.0)
    return Finding("mass", center, int(radius))


def _spiculated_mass(rng: np.random.Generator, values: np.ndarray, room: np.ndarray, radius: int) -> Finding:
    """An irregular mass with an indistinct margin and thin spicules radiating from it."""
    scale = min(values.shape) / 416.0
    reach = 3.0 * radius
    center = _place(rng, room, reach + 6 * scale + 4)
    rs, cs, rr, ccol = _window(values, center, int(reach) + 3)
    theta = np.arctan2(rr, ccol)
    rho = np.sqrt(rr * rr + ccol * ccol)
    edge = radius * (1.0 + synth._wobble(rng, theta, 0.25, 5))
    profile = np.clip((edge - rho) / max(1.5, 0.35 * radius), 0.0, 1.0)
    width = max(0.8, 0.9 * scale)
    for _ in range(int(rng.integers(8, 17))):
        direction = rng.uniform(0, 2 * np.pi)
        length = radius * rng.uniform(1.6, 3.0)
        along = rr * np.sin(direction) + ccol * np.cos(direction)
        across = np.abs(-rr * np.cos(direction) + ccol * np.sin(direction))
        # Thin line, fading with distance from the centre.
        line = np.clip(1.0 - across / width, 0.0, 1.0) * (along > 0) * np.clip(1.0 - along / length, 0.0, 1.0)
        profile = np.maximum(profile, 0.85 * line)
    _blend_mass(values[rs, cs], profile, 2950.0)
    return Finding("mass", center, int(radius))


def _dots(patch: np.ndarray, rr: np.ndarray, ccol: np.ndarray, centers: list[tuple[float, float]],
          radii: list[float], rng: np.random.Generator) -> None:
    for (dr, dc), size in zip(centers, radii):
        d2 = (rr - dr) ** 2 + (ccol - dc) ** 2
        patch[d2 <= size * size] = rng.uniform(3750, 4050)


def _coarse_calcifications(rng: np.random.Generator, values: np.ndarray, room: np.ndarray, radius: int) -> Finding:
    """A few large, round calcifications scattered over a wide area (benign pattern)."""
    scale = min(values.shape) / 416.0
    spread = 2.5 * radius
    center = _place(rng, room, spread + 6 * scale + 4)
    rs, cs, rr, ccol = _window(values, center, int(spread) + 6)
    count = int(rng.integers(2, 6))
    centers, radii = [], []
    for _ in range(count):
        ang, dist = rng.uniform(0, 2 * np.pi), spread * np.sqrt(rng.uniform(0.05, 1))
        centers.append((dist * np.sin(ang), dist * np.cos(ang)))
        radii.append(max(2.0, rng.uniform(2.4, 3.8) * scale))
    _dots(values[rs, cs], rr, ccol, centers, radii, rng)
    return Finding("calcifications", center, int(spread))


def _linear_calcifications(rng: np.random.Generator, values: np.ndarray, room: np.ndarray, radius: int) -> Finding:
    """Fine calcifications along two or three branching segments (fine-linear branching pattern)."""
    scale = min(values.shape) / 416.0
    center = _place(rng, room, 1.6 * radius + 6 * scale + 4)
    rs, cs, rr, ccol = _window(values, center, 2 * radius + 2)
    centers, radii = [], []
    start = (rng.uniform(-0.3, 0.3) * radius, rng.uniform(-0.3, 0.3) * radius)
    for _ in range(int(rng.integers(2, 4))):
        direction = rng.uniform(0, 2 * np.pi)
        length = radius * rng.uniform(0.8, 1.4)
        for t in np.linspace(0.0, 1.0, int(rng.integers(5, 10))):
            jitter = rng.normal(0.0, 0.6 * scale, 2)
            centers.append((start[0] + t * length * np.sin(direction) + jitter[0],
                            start[1] + t * length * np.cos(direction) + jitter[1]))
            radii.append(max(1.0, rng.uniform(0.8, 1.3) * scale))
    _dots(values[rs, cs], rr, ccol, centers, radii, rng)
    return Finding("calcifications", center, int(radius))


def _paint(rng: np.random.Generator, values: np.ndarray, room: np.ndarray, appearance: str) -> Finding | None:
    """Paint ``appearance`` into ``values`` (chest wall on the left) and return where it went."""
    if appearance == "normal":
        return None
    if appearance == "suspicious_mass":
        return synth._paint_finding(rng, values, room, "mass")
    if appearance == "suspicious_calcifications":
        return synth._paint_finding(rng, values, room, "calcifications")
    scale = min(values.shape) / 416.0
    if appearance == "benign_mass":
        return _oval_mass(rng, values, room, max(5, round(rng.uniform(12, 22) * scale)), 0.0, halo=True)
    if appearance == "probably_benign_mass":
        return _oval_mass(rng, values, room, max(4, round(rng.uniform(8, 13) * scale)), 0.10, halo=False)
    if appearance == "spiculated_mass":
        return _spiculated_mass(rng, values, room, max(4, round(rng.uniform(11, 18) * scale)))
    if appearance == "benign_calcifications":
        return _coarse_calcifications(rng, values, room, max(4, round(rng.uniform(10, 18) * scale)))
    if appearance == "linear_calcifications":
        return _linear_calcifications(rng, values, room, max(4, round(rng.uniform(12, 20) * scale)))
    raise ValueError(f"apariencia desconocida / unknown appearance {appearance!r}: {APPEARANCES}")


def make_labelled_view(
    *,
    laterality: Laterality,
    view: View,
    appearance: str = "normal",
    rows: int = 512,
    cols: int = 416,
    seed: int = 0,
    photometric: Photometric = "MONOCHROME2",
    density: float = 0.3,
    study: StudyIdentity | None = None,
) -> SyntheticView:
    """Draw one view with a finding of the given ``appearance`` (see the module table).

    Same anatomy, noise, tags and orientation as :func:`shared.synth.make_view`; the same
    arguments always give byte-identical output.
    """
    birads_of(appearance)
    if laterality not in ("R", "L") or view not in ("CC", "MLO"):
        raise ValueError(f"vista no soportada / unsupported view: {laterality} {view}")
    if not 0.0 <= density <= 1.0:
        raise ValueError("density debe estar entre 0 y 1 / density must be within 0..1")
    if rows < 64 or cols < 64:
        raise ValueError("la imagen debe medir al menos 64x64 / image must be at least 64x64")
    identity = study if study is not None else study_identity(seed)
    # Same generator stream as shared.synth.make_view, so shared appearances match it exactly.
    rng = np.random.default_rng([seed, ord(laterality), 1 if view == "MLO" else 0, 0xB2EA57])
    values, breast, pectoral, room = synth._draw_anatomy(rng, rows, cols, view, density)
    finding = _paint(rng, values, room, appearance)
    findings = [finding] if finding is not None else []
    pixels = synth._add_noise(rng, values, breast)
    return synth.finish_view(identity, laterality, view, pixels, breast, pectoral, findings, photometric)


def make_labelled_study(spec: CaseSpec | int, *, hospital_id: str = "HOSP-DEMO") -> LabelledStudy:
    """Draw the four views of a labelled study (``spec`` or a seed for :func:`sample_case`)."""
    case = spec if isinstance(spec, CaseSpec) else sample_case(int(spec))
    identity = study_identity(case.seed, hospital_id=hospital_id)
    views = [
        make_labelled_view(
            laterality=lat,
            view=vw,
            appearance=case.appearance if lat == case.finding_laterality else "normal",
            rows=case.rows,
            cols=case.cols,
            seed=case.seed,
            photometric=case.photometric,
            density=case.density_fraction,
            study=identity,
        )
        for lat, vw in _STANDARD_VIEWS
    ]
    study = SyntheticStudy(
        study_uid=identity.study_uid,
        accession_number=identity.accession_number,
        patient_id=identity.patient_id,
        hospital_id=hospital_id,
        views=views,
    )
    return LabelledStudy(spec=case, study=study, labels=case.labels())


def case_seeds(seed: int, count: int) -> list[int]:
    """``count`` distinct study seeds derived from a data-set seed (disjoint across data-set seeds
    with overwhelming probability)."""
    states = np.random.SeedSequence([seed, 0xDA7A5E7]).generate_state(count, dtype=np.uint32)
    return [int(s) for s in states]


__all__ = [
    "APPEARANCES",
    "APPEARANCE_BIRADS",
    "APPEARANCE_WEIGHTS",
    "Appearance",
    "BreastLabel",
    "CaseSpec",
    "DENSITY_BOUNDS",
    "DensityCategory",
    "LabelledStudy",
    "birads_of",
    "case_seeds",
    "density_category",
    "make_labelled_study",
    "make_labelled_view",
    "malignancy_of_birads",
    "sample_case",
]
