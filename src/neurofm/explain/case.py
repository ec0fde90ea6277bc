"""Explaining a finetuned run on raw cases: the model input as ``predict`` builds it, the score
each task explains, and maps returned to the input file's geometry.

The model input is exactly what :mod:`neurofm.predict` feeds the model (same preprocessing,
centre crop/pad for case-level tasks). Segmentation models are run on the whole padded image in
one pass instead of sliding windows, so one gradient explains one prediction. Explained scores:

* infarct (linear or MIL head): the case logit; ROAD reads the probability;
* brain age: the model output (standardised age); ROAD reads the same;
* meningioma: the sum of logits over the predicted region (probability >= the run's threshold);
  ROAD reads the mean probability over that region. An empty predicted region has nothing to
  explain and is a :class:`NeuroFMError` naming the case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from neurofm.data.preprocess import Geometry, preprocess, restore_geometry
from neurofm.errors import NeuroFMError
from neurofm.explain.cams import Attribution, ScoreFn, attribute, check_layers, default_layer
from neurofm.explain.road import DEFAULT_FRACTIONS, RoadResult, road
from neurofm.inference import fit_to_shape, pad_to_at_least
from neurofm.io.nifti import voxel_spacing
from neurofm.models import TaskModel, build_task_model
from neurofm.predict import Predictor, case_inputs

RANDOMISATION_SEED_OFFSET = 1_000_003


class EmptyRegion(NeuroFMError):
    """A segmentation case whose predicted region is empty: a warning, not a failure."""


@dataclass
class ModelInput:
    """One case as the model sees it, and how to return a map to the file's grid."""

    case: str
    x: Tensor
    pads: list[float]
    geometry: Geometry
    crop: tuple[slice, ...] | None  # segmentation: undo the padding; else centre crop/pad

    @property
    def baseline(self) -> Tensor:
        """The image of air (each channel's normalised background value)."""
        return torch.tensor(self.pads, dtype=self.x.dtype).reshape(1, -1, 1, 1, 1).expand_as(self.x)

    @property
    def file_spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) of the case file's grid, where maps are written."""
        return voxel_spacing(np.asarray(self.geometry.file_affine))

    @property
    def head(self) -> np.ndarray:
        """Voxels of the model input that are not padding/air in every channel."""
        x = self.x[0].cpu().numpy()
        return np.any(np.abs(x - np.asarray(self.pads).reshape(-1, 1, 1, 1)) > 1e-3, axis=0)


@dataclass
class Target:
    """The scalar a map explains (``score``) and the one ROAD reads (``readout``)."""

    score: ScoreFn
    readout: ScoreFn


def _divisible(shape: Sequence[int], divisor: int, at_least: Sequence[int]) -> tuple[int, ...]:
    return tuple(
        max(int(m), -(-int(n) // divisor) * divisor) for n, m in zip(shape, at_least, strict=True)
    )


def model_input(predictor: Predictor, case_dir: Path) -> ModelInput:
    """Load and preprocess a case folder exactly as ``predict`` does."""
    volume, file_affine = case_inputs(Path(case_dir), predictor)
    prep = preprocess(volume, predictor.params, file_affine=file_affine)
    pads = [n.pad_value for n in prep.norms]
    if predictor.task.kind == "segmentation":
        roi = list(predictor.config.patch_size)
        divisor = predictor.model.cfg.backbone.divisor
        image, crop = pad_to_at_least(
            prep.image, _divisible(prep.image.shape[1:], divisor, roi), pads
        )
        x = torch.from_numpy(image)[None]
        return ModelInput(Path(case_dir).name, x.to(predictor.device), pads, prep.geometry, crop)
    size = tuple(predictor.config.input_size)
    x = torch.from_numpy(fit_to_shape(prep.image, size, pads))[None]
    return ModelInput(Path(case_dir).name, x.to(predictor.device), pads, prep.geometry, None)


def target(predictor: Predictor, model: TaskModel, inp: ModelInput) -> Target:
    """The explained score of ``model`` for this case (see the module docstring)."""
    kind = predictor.task.kind
    if kind == "classification":
        return Target(lambda x: model(x).reshape(-1), lambda x: torch.sigmoid(model(x)).reshape(-1))
    if kind == "regression":
        return Target(lambda x: model(x).reshape(-1), lambda x: model(x).reshape(-1))
    threshold = predictor.config.threshold
    with torch.no_grad():  # the trained model's region, also for a randomised twin
        region = (torch.sigmoid(predictor.model.eval()(inp.x)) >= threshold).float()
    if not region.any():
        raise EmptyRegion(
            inp.case,
            "the model predicts no tumour voxel (empty region): there is nothing to explain",
        )
    n = region.sum()
    return Target(
        lambda x: (model(x) * region).flatten(1).sum(dim=1),
        lambda x: (torch.sigmoid(model(x)) * region).flatten(1).sum(dim=1) / n,
    )


def to_file_grid(cam: np.ndarray, inp: ModelInput) -> tuple[np.ndarray, np.ndarray]:
    """A map on the model-input grid, returned as ``(array, affine)`` on the case file's grid."""
    if inp.crop is not None:
        on_prep = cam[inp.crop]
    else:
        on_prep = fit_to_shape(cam[None].astype(np.float32), inp.geometry.shape, [0.0])[0]
    return restore_geometry(on_prep, inp.geometry, order=1, fill=0.0)


def randomised_model(predictor: Predictor, seed: int = 0) -> TaskModel:
    """The same architecture with freshly initialised weights (model-randomisation sanity).

    The seed is offset so that it never reproduces a training run's initial weights (runs seed
    their initialisation with small integers)."""
    torch.manual_seed(RANDOMISATION_SEED_OFFSET + seed)
    model = build_task_model(predictor.config.model)
    return model.to(predictor.device).eval()


def explain_case(
    predictor: Predictor,
    inp: ModelInput,
    methods: Sequence[str],
    layers: Sequence[str] | None = None,
    model: TaskModel | None = None,
    samples: int = 8,
) -> list[Attribution]:
    """Maps of ``methods`` for one case (CAMs at ``layers``, default: the last stage)."""
    net = predictor.model if model is None else model
    net.eval()
    chosen = check_layers(net, layers) if layers else [default_layer(net)]
    return attribute(
        net, inp.x, target(predictor, net, inp).score, methods, chosen, inp.baseline, samples
    )


def road_case(
    predictor: Predictor,
    inp: ModelInput,
    cam: np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    batch_size: int = 4,
) -> RoadResult:
    """ROAD of one map (model-input grid) on this case, scored by the task's readout."""
    readout = target(predictor, predictor.model, inp).readout

    @torch.no_grad()
    def score(batch: np.ndarray) -> np.ndarray:
        xs = torch.from_numpy(batch.astype(np.float32)).to(inp.x.device)
        return np.concatenate(
            [
                readout(xs[i : i + batch_size]).float().cpu().numpy()
                for i in range(0, len(xs), batch_size)
            ]
        )

    return road(inp.x[0].cpu().numpy(), cam, score, fractions)


def lesion_mask(case_dir: Path, task: str) -> Path | None:
    """The reference lesion mask of a benchmark case, if there is one: ``label.nii.gz`` in the
    case folder (meningioma) or ``<root>/ground_truth/<task>/<split>/<case>.nii.gz`` (infarct)."""
    case_dir = Path(case_dir)
    own = case_dir / "label.nii.gz"
    if own.is_file():
        return own
    gt = (
        case_dir.parents[2]
        / "ground_truth"
        / task
        / case_dir.parent.name
        / f"{case_dir.name}.nii.gz"
    )
    return gt if len(case_dir.parents) > 2 and gt.is_file() else None


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A lesion mask in its file's voxel order (the order maps are written in)."""
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)
    mask = np.asarray(img.dataobj) > 0.5
    if mask.shape != tuple(shape):
        raise NeuroFMError(path, f"mask shape {mask.shape} is not the case's shape {tuple(shape)}")
    return mask
