"""Embeddings of raw cases by a finetuned run's encoder, fed exactly as prediction feeds it.

A case is loaded and preprocessed with the run's own recipe (:mod:`neurofm.predict`), centre-
cropped or padded to the run's input size, and reduced to the encoder's pooled bottleneck
(``TaskModel.embed``). The run's weights are identified by the sha256 of their file, so a
monitor can refuse embeddings from another model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from neurofm.data.preprocess import preprocess
from neurofm.errors import NeuroFMError
from neurofm.inference import fit_to_shape
from neurofm.io.nifti import Volume
from neurofm.models import build_task_model
from neurofm.predict import Predictor, case_inputs, load_predictor
from neurofm.runfiles import WEIGHTS

VolumeTransform = Callable[[Volume], Volume]
"""A change applied to a raw case before preprocessing (a corruption, for shift tests)."""


def weights_sha256(run: Path) -> str:
    """sha256 of a run's weight file: what a monitor records and checks."""
    path = Path(run) / WEIGHTS
    if not path.is_file():
        raise NeuroFMError(path, "no model weights (not a finetuned run?)")
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Embedder:
    """A loaded run's encoder; ``weights`` is the sha256 that identifies it (``random:<seed>``
    for a randomly initialised encoder of the same architecture)."""

    predictor: Predictor
    weights: str

    @torch.no_grad()
    def embed_volume(self, volume: Volume, file_affine: np.ndarray | None = None) -> np.ndarray:
        """Pooled bottleneck ``(D,)`` float64 of one raw multi-channel volume."""
        p = self.predictor
        prep = preprocess(volume, p.params, file_affine=file_affine)
        pads = [n.pad_value for n in prep.norms]
        x = torch.from_numpy(fit_to_shape(prep.image, tuple(p.config.input_size), pads))
        p.model.eval()
        z = p.model.embed(x[None].to(p.device))[0]
        return np.asarray(z.float().cpu().numpy(), dtype=np.float64)

    def embed_cases(
        self,
        case_dirs: Sequence[Path],
        transform: VolumeTransform | None = None,
        label: str = "embed",
        progress: bool = True,
    ) -> np.ndarray:
        """``(N, D)`` embeddings of case folders (optionally transformed first)."""
        rows = []
        with Progress(disable=not progress, transient=True) as bar:
            job = bar.add_task(label, total=len(case_dirs))
            for case in case_dirs:
                volume, affine = case_inputs(Path(case), self.predictor)
                if transform is not None:
                    volume = transform(volume)
                rows.append(self.embed_volume(volume, affine))
                bar.advance(job)
        return np.stack(rows)


def load_embedder(run: Path, device: str = "cpu", random_init: int | None = None) -> Embedder:
    """The encoder of a finetuned run; with ``random_init`` a freshly initialised encoder of the
    same architecture (seeded), the baseline that shows what pretraining adds."""
    predictor = load_predictor(run, device)
    if random_init is None:
        return Embedder(predictor, weights_sha256(run))
    torch.manual_seed(random_init)
    model = build_task_model(predictor.config.model).to(predictor.device)
    return Embedder(
        Predictor(model, predictor.task, predictor.config, predictor.device),
        f"random:{random_init}",
    )
