"""Pictures of 3D maps: a PNG of three orthogonal slices, and the CAManim GIF (matplotlib
object API on an Agg canvas, no pyplot state).

CAManim (Kaczmarek et al. 2023) shows the map of every layer, encoder to decoder, as frames of
one animation; here each frame is a slice through the lesion (or the map's maximum) beside the
per-layer ROAD curve with the current layer marked ("yellow-brick ROAD"). Written with
matplotlib's Pillow writer (GIF): no ffmpeg is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurofm.explain.metacam import scaled


def focus(cam: np.ndarray, mask: np.ndarray | None = None) -> tuple[int, int, int]:
    """The voxel the slices go through: the lesion's centre of mass, else the map's maximum."""
    if mask is not None and mask.any():
        c = np.argwhere(mask).mean(axis=0).round().astype(int)
        return int(c[0]), int(c[1]), int(c[2])
    i = np.unravel_index(int(np.argmax(np.nan_to_num(cam))), cam.shape)
    return int(i[0]), int(i[1]), int(i[2])


def _slices(vol: np.ndarray, at: tuple[int, int, int]) -> list[np.ndarray]:
    return [vol[at[0], :, :].T, vol[:, at[1], :].T, vol[:, :, at[2]].T]


Spacing = tuple[float, float, float]


def _aspects(spacing: Spacing) -> list[float]:
    """Height/width of a voxel in the sagittal, coronal and axial pictures."""
    sx, sy, sz = spacing
    return [sz / sy, sz / sx, sy / sx]


def _draw(
    axes: Sequence[Axes],
    image: np.ndarray,
    cam: np.ndarray,
    mask: np.ndarray | None,
    at: tuple[int, int, int],
    spacing: Spacing,
) -> None:
    overlay = scaled(cam)
    outlines = _slices(mask.astype(float), at) if mask is not None else [None] * 3
    for ax, img, ov, m, aspect in zip(
        axes, _slices(image, at), _slices(overlay, at), outlines, _aspects(spacing), strict=True
    ):
        ax.clear()
        ax.imshow(img, cmap="gray", origin="lower", aspect=aspect)
        ax.imshow(
            np.ma.masked_less_equal(ov, 0.05),
            cmap="jet",
            alpha=0.5,
            origin="lower",
            vmin=0,
            vmax=1,
            aspect=aspect,
        )
        if m is not None and m.any():
            ax.contour(m, levels=[0.5], colors="lime", linewidths=1.0)
        ax.set_axis_off()


def montage(
    path: Path,
    image: np.ndarray,
    cam: np.ndarray,
    title: str,
    mask: np.ndarray | None = None,
    spacing: Spacing = (1.0, 1.0, 1.0),
) -> Path:
    """Sagittal, coronal and axial slices of ``image`` with ``cam`` over it (lesion outlined),
    drawn with the voxels' ``spacing`` (mm) so thick-sliced cases are not squashed."""
    at = focus(cam, mask)
    fig = Figure(figsize=(9, 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    _draw(axes, image, cam, mask, at, spacing)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def camanim(
    path: Path,
    image: np.ndarray,
    cams: Sequence[np.ndarray],
    layers: Sequence[str],
    road_scores: Sequence[float],
    title: str,
    mask: np.ndarray | None = None,
    spacing: Spacing = (1.0, 1.0, 1.0),
    fps: int = 2,
) -> Path:
    """GIF: one frame per layer, three slices of its map beside the per-layer ROAD curve."""
    at = focus(cams[-1], mask)
    fig = Figure(figsize=(12, 4.0))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.4])
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    curve = fig.add_subplot(grid[0, 3])
    xs = np.arange(len(layers))

    def frame(i: int) -> list[Artist]:
        _draw(axes, image, cams[i], mask, at, spacing)
        curve.clear()
        curve.plot(xs, road_scores, "o-", color="0.4")
        curve.plot([i], [road_scores[i]], "o", color="gold", markersize=12)
        curve.set_xticks(
            xs,
            [n.replace("encoder.", "enc.").replace("decoder.", "dec.") for n in layers],
            rotation=60,
            fontsize=6,
        )
        curve.set_ylabel("ROAD (LeRF - MoRF)", fontsize=7)
        curve.tick_params(labelsize=6)
        fig.suptitle(f"{title} — {layers[i]}", fontsize=9)
        return []

    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.3, top=0.88, wspace=0.1)
    anim = FuncAnimation(fig, frame, frames=len(layers), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=fps))
    return path
