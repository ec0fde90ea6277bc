"""Prediction and explanation with a diffusion-classifier run, through ``neurofm predict``.

:class:`DiffusionPredictor` is a :class:`~neurofm.predict.Predictor` whose model output is the
logit of the classification rule's probability, so ``predict_volume`` (which applies the
sigmoid) writes the probability like any infarct model and everything downstream (evaluate,
leaderboard, packages) works unchanged. The image is preprocessed and centre-cropped/padded to
the run's input size exactly as for the discriminative models; errors are averaged over the
head (voxels that are not air in every channel) so the padding does not dilute them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurofm.data.preprocess import Preprocessed, preprocess, restore_geometry
from neurofm.device import select_device
from neurofm.diffusion.classify import ClassifierSettings, Verdict, classify
from neurofm.diffusion.schedule import NoiseSchedule
from neurofm.errors import NeuroFMError
from neurofm.inference import fit_to_shape
from neurofm.io.nifti import Volume
from neurofm.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig
from neurofm.predict import Predictor
from neurofm.runconfig import FinetuneRunConfig
from neurofm.runfiles import CONFIG, WEIGHTS, load_weights
from neurofm.task_text import TASK_FILE_KEY, recorded_task

HEAD = "diffusion"


def is_diffusion_run(cfg: FinetuneRunConfig) -> bool:
    """True when ``config.json`` says ``"head": "diffusion"``."""
    return cfg.extra.get("head") == HEAD


def head_voxels(image: np.ndarray, pads: list[float]) -> np.ndarray:
    """Voxels of ``(C, X, Y, Z)`` where some channel differs from its air value."""
    return np.any(np.abs(image - np.asarray(pads).reshape(-1, 1, 1, 1)) > 1e-3, axis=0)


@dataclass
class DiffusionPredictor(Predictor):
    """A loaded diffusion classifier; ``model`` is its :class:`DiffusionUNet`."""

    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    rule: ClassifierSettings = field(default_factory=ClassifierSettings)

    @property
    def net(self) -> DiffusionUNet:
        assert isinstance(self.model, DiffusionUNet)
        return self.model

    def verdict(
        self, prep: Preprocessed, rule: ClassifierSettings | None = None, maps: bool = False
    ) -> Verdict:
        """The rule applied to one preprocessed case (maps on the model-input grid)."""
        pads = [n.pad_value for n in prep.norms]
        image = fit_to_shape(prep.image, self.config.input_size, pads)
        x0 = torch.from_numpy(image).to(self.device)
        within = torch.from_numpy(head_voxels(image, pads))
        if not bool(within.any()):
            within = torch.ones_like(within)
        self.net.eval()
        return classify(
            self.net, x0, self.schedule, rule or self.rule, within=within, keep_maps=maps
        )

    def model_output(
        self, volume: Volume, file_affine: np.ndarray | None = None
    ) -> tuple[float | np.ndarray, Preprocessed]:
        """The logit of the rule's probability (``predict_volume`` turns it back)."""
        prep = preprocess(volume, self.params, file_affine=file_affine)
        p = self.verdict(prep).probability
        return float(np.log(p / (1.0 - p))), prep

    def error_map(
        self, prep: Preprocessed, rule: ClassifierSettings | None = None
    ) -> tuple[Verdict, np.ndarray, np.ndarray]:
        """Verdict plus ``error(class 0) - error(class 1)`` per voxel on the file's grid
        (positive: the infarct hypothesis explains the voxel better), with its affine."""
        v = self.verdict(prep, rule, maps=True)
        assert v.maps is not None
        diff = (v.maps[0] - v.maps[1]).astype(np.float32)
        on_prep = fit_to_shape(diff[None], prep.geometry.shape, [0.0])[0]
        array, affine = restore_geometry(on_prep, prep.geometry, order=1, fill=0.0)
        return v, array, affine


def load_diffusion_predictor(
    folder: Path, cfg: FinetuneRunConfig, device: str = "auto"
) -> DiffusionPredictor:
    """Rebuild the network and rule recorded in ``config.json`` and load its weights."""
    folder = Path(folder)
    section = cfg.extra.get(HEAD)
    try:
        assert isinstance(section, dict)
        net_cfg = DiffusionUNetConfig.from_dict(section["model"])
        schedule = NoiseSchedule(section["schedule"]["kind"], int(section["schedule"]["steps"]))
        rule = ClassifierSettings(**section["classifier"])
    except (AssertionError, KeyError, TypeError) as exc:
        raise NeuroFMError(folder / CONFIG, f"malformed 'diffusion' section ({exc!r})") from exc
    net = DiffusionUNet(net_cfg)
    missing, unexpected = net.load_state_dict(load_weights(folder), strict=False)
    if missing or unexpected:
        raise NeuroFMError(
            folder / WEIGHTS,
            f"weights do not fit the diffusion model in config.json ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[:3]})",
        )
    dev = select_device(device)
    net.to(dev)
    task = recorded_task(cfg.task, cfg.extra.get(TASK_FILE_KEY), folder / CONFIG)
    return DiffusionPredictor(net, task, cfg, dev, schedule, rule)  # type: ignore[arg-type]
