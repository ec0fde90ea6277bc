"""3D class activation maps and gradient attributions for any model with one score per case.

The CAM family (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM) is computed by hand from a
layer's activations ``A`` and the gradients ``G`` of the score with respect to them: one forward
and one backward pass with hooks yields ``A`` and ``G`` at every requested layer, so all five
methods at all layers cost a single pass (captum has only Grad-CAM of these, one pass per layer,
and pytorch-grad-cam needs torchvision, which does not import beside this torch build).
Score-CAM masks the input with each channel of a layer. SmoothGrad and Integrated Gradients come
from captum. Gradient maps are ``sum_c |attribution_c|`` over input channels.

A map is kept unnormalised; one without spread (constant, e.g. a dead layer whose ReLU-ed map is
all zero) or with NaN is marked ``constant`` and must be reported, never rescaled into noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neurofm.errors import NeuroFMError

ScoreFn = Callable[[Tensor], Tensor]
"""Model input batch ``(B, C, X, Y, Z)`` -> the explained score, one per case ``(B,)``."""

GRADIENT_CAMS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
CAM_METHODS = (*GRADIENT_CAMS, "scorecam")
INPUT_METHODS = ("smoothgrad", "integrated_gradients")
METHODS = (*CAM_METHODS, *INPUT_METHODS)
EPS = 1e-7


def check_methods(methods: Sequence[str]) -> list[str]:
    """Refuse unknown method names, listing the valid ones."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise NeuroFMError("--method", f"unknown method(s) {bad}; valid: {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def conv_stages(model: nn.Module) -> dict[str, nn.Module]:
    """The model's convolutional stages by name, encoder to decoder.

    For neurofm's U-Net task models: the stem, each encoder stage, each decoder stage and the
    final upsampling (when the stem is strided); for any other model every 3D (transposed) conv.
    """
    names = dict(model.named_modules())
    if "encoder.stem" in names and "encoder.stages" in names:
        order = ["encoder.stem"]
        order += [n for n in names if n.count(".") == 2 and n.startswith("encoder.stages.")]
        order += [n for n in names if n.count(".") == 2 and n.startswith("decoder.stages.")]
        order += [n for n in ("decoder.final_up",) if names.get(n) is not None]
        return {n: names[n] for n in order}
    return {n: m for n, m in names.items() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)}


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Resolve ``["all"]`` and refuse unknown layer names, listing the valid ones."""
    valid = list(conv_stages(model))
    if list(layers) == ["all"]:
        return valid
    bad = [layer for layer in layers if layer not in valid]
    if bad or not layers:
        raise NeuroFMError("--layer", f"unknown layer(s) {bad}; valid: all, {', '.join(valid)}")
    return list(dict.fromkeys(layers))


def default_layer(model: nn.Module) -> str:
    """The last stage before the head: decoder output for dense models, else the bottleneck."""
    stages = list(conv_stages(model))
    if not stages:
        raise NeuroFMError("model", "has no 3D convolution to explain")
    return stages[-1]


def cam_from(method: str, acts: Tensor, grads: Tensor) -> Tensor:
    """One gradient CAM ``(X, Y, Z)`` from activations and gradients ``(C, X, Y, Z)``."""
    dims = tuple(range(1, acts.ndim))
    shape = (-1,) + (1,) * (acts.ndim - 1)
    if method == "gradcam":
        weights = grads.mean(dim=dims)
    elif method == "gradcam++":
        g2, g3 = grads**2, grads**3
        alpha = g2 / (2 * g2 + acts.sum(dim=dims).reshape(shape) * g3 + EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * grads.clamp(min=0)).sum(dim=dims)
    elif method == "xgradcam":
        weights = (grads * acts).sum(dim=dims) / (acts.sum(dim=dims) + EPS)
    elif method == "hirescam":
        return torch.relu((grads * acts).sum(dim=0))
    elif method == "layercam":
        return torch.relu((grads.clamp(min=0) * acts).sum(dim=0))
    else:
        raise NeuroFMError("--method", f"{method!r} is not a gradient CAM ({GRADIENT_CAMS})")
    return torch.relu((weights.reshape(shape) * acts).sum(dim=0))


def upsample(cam: Tensor, size: Sequence[int]) -> Tensor:
    """Trilinear resize of ``(X, Y, Z)`` to the input's spatial size."""
    if tuple(cam.shape) == tuple(size):
        return cam
    out = F.interpolate(cam[None, None].float(), size=tuple(size), mode="trilinear")
    return out[0, 0]


def is_constant(cam: np.ndarray) -> bool:
    """True for a map without spread (dead layer) or with non-finite values."""
    if not np.all(np.isfinite(cam)):
        return True
    lo, hi = float(cam.min()), float(cam.max())
    return hi - lo <= 1e-6 * max(1.0, abs(hi))


@dataclass
class Attribution:
    """One map on the model-input grid ``(X, Y, Z)``; ``layer`` is ``"input"`` for gradient
    methods."""

    method: str
    layer: str
    cam: np.ndarray

    @property
    def constant(self) -> bool:
        return is_constant(self.cam)

    @property
    def name(self) -> str:
        return self.method if self.layer == "input" else f"{self.method}@{self.layer}"


def _record(
    model: nn.Module, layers: Sequence[str]
) -> tuple[dict[str, Tensor], list[RemovableHandle]]:
    stages = conv_stages(model)
    acts: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, object, Tensor], None]:
        def save(_m: nn.Module, _i: object, out: Tensor) -> None:
            acts[name] = out

        return save

    handles = [stages[n].register_forward_hook(hook(n)) for n in layers]
    return acts, handles


def gradient_cams(
    model: nn.Module, x: Tensor, score_fn: ScoreFn, layers: Sequence[str], methods: Sequence[str]
) -> list[Attribution]:
    """All ``methods`` (gradient CAMs) at all ``layers`` for one case ``x`` ``(1, C, X, Y, Z)``
    from one forward and one backward pass."""
    acts, handles = _record(model, layers)
    try:
        with torch.enable_grad():
            score = score_fn(x).sum()
            found = [acts[n] for n in layers]
            grads = torch.autograd.grad(score, found, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, a, g in zip(layers, found, grads, strict=True):
        g = torch.zeros_like(a) if g is None else g
        for m in methods:
            cam = upsample(cam_from(m, a[0].detach(), g[0].detach()), x.shape[2:])
            out.append(Attribution(m, name, cam.cpu().numpy().astype(np.float32)))
    return out


@torch.no_grad()
def score_cam(
    model: nn.Module,
    x: Tensor,
    score_fn: ScoreFn,
    layer: str,
    baseline: Tensor,
    batch_size: int = 8,
) -> Attribution:
    """Score-CAM: each channel of ``layer``, upsampled and min-max scaled, masks the input; the
    softmax of the masked scores weighs the channels (Wang et al. 2020). Masked-out voxels
    become ``baseline`` (air), not 0, which after intensity normalisation is tissue-like."""
    acts, handles = _record(model, [layer])
    try:
        score_fn(x)
    finally:
        for h in handles:
            h.remove()
    a = acts[layer][0].float()
    up = F.interpolate(a[None], size=tuple(x.shape[2:]), mode="trilinear")[0]
    flat = up.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    masks = (up - lo.reshape(-1, 1, 1, 1)) / (hi - lo + EPS).reshape(-1, 1, 1, 1)
    scores = torch.cat(
        [
            score_fn(baseline + masks[i : i + batch_size, None] * (x - baseline))
            .float()
            .reshape(-1)
            for i in range(0, masks.shape[0], batch_size)
        ]
    )
    weights = torch.softmax(scores, dim=0)
    cam = torch.relu((weights.reshape(-1, 1, 1, 1) * a).sum(dim=0))
    cam = upsample(cam, x.shape[2:])
    return Attribution("scorecam", layer, cam.cpu().numpy().astype(np.float32))


def input_attribution(
    x: Tensor, score_fn: ScoreFn, method: str, baseline: Tensor, samples: int = 8
) -> Attribution:
    """SmoothGrad (noise 15 % of the input range) or Integrated Gradients (from ``baseline``,
    the image of air) via captum, as ``sum_c |attribution_c|``."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if method == "smoothgrad":
            sd = 0.15 * float(x.max() - x.min())
            attr = NoiseTunnel(Saliency(score_fn)).attribute(
                xg, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=2, stdevs=sd
            )
        elif method == "integrated_gradients":
            attr = IntegratedGradients(score_fn).attribute(
                xg, baselines=baseline, n_steps=samples, internal_batch_size=2
            )
        else:
            raise NeuroFMError("--method", f"{method!r} is not one of {INPUT_METHODS}")
    cam = attr.detach().abs().sum(dim=1)[0]
    return Attribution(method, "input", cam.cpu().numpy().astype(np.float32))


def attribute(
    model: nn.Module,
    x: Tensor,
    score_fn: ScoreFn,
    methods: Sequence[str],
    layers: Sequence[str],
    baseline: Tensor | None = None,
    samples: int = 8,
) -> list[Attribution]:
    """Every requested map for one case: CAMs at each of ``layers``, gradient methods once."""
    model.eval()
    methods = check_methods(methods)
    grad_cams = [m for m in methods if m in GRADIENT_CAMS]
    out: list[Attribution] = []
    if grad_cams and layers:
        out += gradient_cams(model, x, score_fn, layers, grad_cams)
    base = torch.zeros_like(x) if baseline is None else baseline
    if "scorecam" in methods:
        out += [score_cam(model, x, score_fn, layer, base) for layer in layers]
    out += [input_attribution(x, score_fn, m, base, samples) for m in methods if m in INPUT_METHODS]
    order = {m: i for i, m in enumerate(methods)}
    return sorted(out, key=lambda a: order[a.method])
