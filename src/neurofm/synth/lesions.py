"""Lesions defined in MNI space: infarcts in arterial territories and dural-based meningiomas.

Both are analytic shapes evaluated at whatever MNI points a subject's voxels pull back to, so
they deform with the subject and never need resampling.

Infarcts: a lobulated blob (sphere plus a few random plane waves on its radius) intersected with
a soft box for its territory, in the hemisphere ``side``: MCA lateral convexity and insula, ACA
medial frontal/parietal, PCA occipital, lacunes in deep white matter / basal ganglia. Radii are
log-uniform from a few mm (lacunes) to 40 mm (a large part of the territory), never below the
voxel size, so every positive case is visible at the benchmark's resolution. The fraction is of
the tissue in a voxel: CSF is never infarcted.

Meningiomas: an ellipsoid (round, or plaque-like flattened along the dural normal) centred near a
dural point (convexity, falx or skull base), cut by the intracranial surface so it sits on the
dura, pushing the brain away radially (``displace``) instead of replacing it. Optional
peritumoural oedema (a WM fraction) and calcified spots (dark on SWI/T2*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurofm.synth.templates import Template, ramp

# territory -> (lo, hi) MNI box with x mirrored to the lesion's hemisphere (x' = side * x)
TERRITORIES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "mca": ((25.0, -75.0, -25.0), (72.0, 45.0, 62.0)),
    "aca": ((2.0, -55.0, -5.0), (22.0, 62.0, 78.0)),
    "pca": ((2.0, -108.0, -25.0), (50.0, -55.0, 35.0)),
    "lacune": ((8.0, -30.0, -5.0), (30.0, 25.0, 32.0)),
}
TERRITORY_WEIGHTS = {"mca": 0.5, "aca": 0.15, "pca": 0.15, "lacune": 0.2}
MENINGIOMA_WEIGHTS = {"convexity": 0.5, "falx": 0.25, "skull_base": 0.25}


def _sig(v: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * v)))


@dataclass(frozen=True)
class Infarct:
    """One infarct and its stage-dependent contrast factors (relative to the healthy tissue)."""

    territory: str
    side: int
    centre: np.ndarray
    radius: float
    waves: np.ndarray  # (n, 3) wave vectors, rad/mm
    phases: np.ndarray  # (n,)
    roughness: float
    t2_factor: float
    flair_factor: float
    adc_factor: float

    def fraction(self, points: np.ndarray, width: float) -> np.ndarray:
        """Infarcted fraction of the tissue at MNI ``points`` (..., 3)."""
        out = np.zeros(points.shape[:-1], dtype=np.float32)
        r = np.sqrt(((points - self.centre.astype(np.float32)) ** 2).sum(-1))
        near = r < self.radius * (1.0 + self.roughness) + width
        pts, r = points[near], r[near]
        lo, hi = (np.asarray(b, dtype=np.float32) for b in TERRITORIES[self.territory])
        mirrored = pts * np.asarray([self.side, 1, 1], dtype=np.float32)
        box = np.prod(_sig((mirrored - lo) / 4.0) * _sig((hi - mirrored) / 4.0), axis=-1)
        wobble = np.cos(pts @ self.waves.T.astype(np.float32) + self.phases).mean(-1)
        surface = self.radius * (1.0 + self.roughness * wobble)
        out[near] = ramp(surface - r, width) * box
        return out


def sample_infarct(rng: np.random.Generator, template: Template, voxel_mm: float) -> Infarct:
    """Draw a territory, hemisphere, size and a centre that lies in brain tissue."""
    names = list(TERRITORY_WEIGHTS)
    territory = names[rng.choice(len(names), p=list(TERRITORY_WEIGHTS.values()))]
    side = int(rng.choice([-1, 1]))
    if territory == "lacune":
        lo_r, hi_r = max(2.0, 0.8 * voxel_mm), 7.5
    else:
        lo_r, hi_r = max(6.0, 1.2 * voxel_mm), 40.0
    radius = float(np.exp(rng.uniform(np.log(lo_r), np.log(max(hi_r, lo_r)))))
    lo, hi = (np.asarray(b) for b in TERRITORIES[territory])
    margin = np.minimum(4.0, (hi - lo) / 4)
    centre = None
    for _ in range(20):
        cand = rng.uniform(lo + margin, hi - margin, (128, 3)) * [side, 1, 1]
        ok = np.flatnonzero(template.sample_tissue(cand) >= 0.8)
        if len(ok):
            centre = cand[ok[0]]
            break
    if centre is None:  # the territory boxes all contain tissue; this guards a broken template
        raise RuntimeError(f"no tissue found in the {territory} territory")
    n = 8
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    waves = dirs / (0.6 * radius) * rng.uniform(0.7, 1.4, (n, 1))
    return Infarct(
        territory=territory,
        side=side,
        centre=centre,
        radius=radius,
        waves=waves,
        phases=rng.uniform(0, 2 * np.pi, n),
        roughness=float(rng.uniform(0.1, 0.3)),
        t2_factor=float(rng.uniform(1.3, 1.6)),
        flair_factor=float(rng.uniform(1.4, 2.0)),
        adc_factor=float(rng.uniform(0.4, 0.6)),
    )


@dataclass(frozen=True)
class Meningioma:
    """An extra-axial dural-based mass; ``frame`` rows are two tangents and the outward normal."""

    location: str
    centre: np.ndarray
    frame: np.ndarray
    axes: np.ndarray  # semi-axes (mm) along the frame rows
    push: float  # how far (in tumour radii) the brain displacement reaches
    oedema_mm: float  # 0: no oedema
    calcs: tuple[tuple[tuple[float, float, float], float], ...] = field(default=())

    @property
    def diameter_mm(self) -> float:
        return float(2 * self.axes.max())

    def _rho(self, points: np.ndarray) -> np.ndarray:
        local = (points - self.centre.astype(np.float32)) @ self.frame.T.astype(np.float32)
        return np.asarray(np.sqrt(((local / self.axes.astype(np.float32)) ** 2).sum(-1)))

    def fraction(self, points: np.ndarray, width: float) -> np.ndarray:
        """Tumour partial volume before the cut by the intracranial surface."""
        return np.asarray(ramp((1.0 - self._rho(points)) * self.axes.min(), width))

    def displace(self, points: np.ndarray) -> np.ndarray:
        """Where each point's brain tissue came from: pushed radially out of the tumour."""
        rho = self._rho(points)
        src = np.where(rho > 1.0, rho - np.exp(-(rho - 1.0) / self.push), 0.0)
        scale = (src / np.maximum(rho, 1e-6))[..., None].astype(np.float32)
        c = self.centre.astype(np.float32)
        return np.asarray(c + (points - c) * scale)

    def oedema(self, points: np.ndarray) -> np.ndarray:
        """Oedematous fraction of the white matter around the tumour."""
        if self.oedema_mm <= 0:
            return np.zeros(points.shape[:-1], dtype=np.float32)
        beyond = (self._rho(points) - 1.0) * float(self.axes.mean())
        weight = np.clip(1.0 - beyond / self.oedema_mm, 0.0, 1.0) * (beyond > 0)
        return np.asarray(weight, dtype=np.float32)

    def calcification(self, points: np.ndarray, width: float) -> np.ndarray:
        """Calcified fraction (to be multiplied by the tumour fraction)."""
        out = np.zeros(points.shape[:-1], dtype=np.float32)
        for centre, radius in self.calcs:
            r = np.sqrt(((points - np.asarray(centre, dtype=np.float32)) ** 2).sum(-1))
            out += ramp(radius - r, width)
        return np.clip(out, 0.0, 1.0)


def _frame(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t1 = np.cross(normal, rng.normal(size=3))
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    return np.stack([t1, t2, normal])


def sample_meningioma(rng: np.random.Generator, template: Template, voxel_mm: float) -> Meningioma:
    """Draw location, size, shape, oedema and calcifications.

    Diameters are log-uniform in 0.5–5 cm but at least 4 voxels (``voxel_mm``, the geometric mean
    voxel size), and at most a tenth of the mass lies beyond the dura, so every tumour is visible
    as a mass of several voxels at the benchmark's resolution.
    """
    names = list(MENINGIOMA_WEIGHTS)
    location = names[rng.choice(len(names), p=list(MENINGIOMA_WEIGHTS.values()))]
    points, normals = template.dura_points[location]
    i = int(rng.integers(len(points)))
    normal = normals[i] * (rng.choice([-1.0, 1.0]) if location == "falx" else 1.0)
    diameter = float(np.exp(rng.uniform(np.log(max(5.0, 4.0 * voxel_mm)), np.log(50.0))))
    radius = diameter / 2
    thickness = max(radius * rng.uniform(0.25, 0.45), voxel_mm)  # semi-axis along the normal
    if rng.random() < 0.2 and thickness <= 0.6 * radius:  # en plaque: flat along the dura
        axes = np.array([radius, radius * rng.uniform(0.8, 1.0), thickness])
    else:
        axes = radius * rng.uniform(0.85, 1.0, 3)
        axes[rng.integers(3)] = radius
    if location == "falx":  # grows from the falx into the hemisphere on the normal's side
        centre = points[i] + normal * rng.uniform(0.0, 0.5) * axes[2]
    else:  # normal points out of the skull: negative offsets sit deeper, rounder on the dura
        centre = points[i] + normal * rng.uniform(-0.5, 0.1) * axes[2]
    frame = _frame(normal, rng)
    oedema = float(rng.uniform(5.0, 25.0)) if diameter > 20 and rng.random() < 0.35 else 0.0
    calcs: list[tuple[tuple[float, float, float], float]] = []
    if rng.random() < 0.4:
        for _ in range(int(rng.integers(1, 5))):
            u = rng.normal(size=3)
            u *= rng.uniform(0, 0.6) / np.linalg.norm(u)
            spot = centre + frame.T @ (axes * u)
            r = float(rng.uniform(max(1.5, 0.5 * voxel_mm), max(3.0, 0.8 * voxel_mm)))
            calcs.append(((float(spot[0]), float(spot[1]), float(spot[2])), r))
    return Meningioma(
        location=location,
        centre=centre,
        frame=frame,
        axes=axes,
        push=float(rng.uniform(0.5, 1.0)),
        oedema_mm=oedema,
        calcs=tuple(calcs),
    )
