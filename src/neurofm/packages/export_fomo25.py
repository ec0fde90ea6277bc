"""Export a verified package as a FOMO25 submission folder (predict.py + Apptainer definition).

The folder holds ``predict.py`` (the challenge's one-case command line, ``--flair path ...
--output path``), the package's ``model/`` and ``manifest.yaml``, an ``Apptainer.def`` that
bootstraps from ``python:3.11-slim`` and pip-installs neurofm from ``wheels/``, and a README. The
files are rendered from ``templates/`` with :class:`string.Template`. Only packages built from a
neurofm run (entrypoint ``neurofm.packages.infer``) can be exported: a hand-made package's code is
not something this exporter can vouch for inside a container.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from string import Template

from neurofm.atomic import publish_dir
from neurofm.errors import NeuroFMError
from neurofm.packages.archive import open_package
from neurofm.packages.build import INFER_ENTRYPOINT, MODEL_DIR
from neurofm.packages.hashing import check_integrity
from neurofm.packages.manifest import MANIFEST_NAME, Manifest, load_manifest

TEMPLATES = ("predict.py", "Apptainer.def", "README.md")
_OUTPUT_DESC = {
    "probability": "the infarct probability in [0, 1] as text (one number)",
    "number": "the brain age in years as text (one number)",
    "mask": "the binary meningioma mask as NIfTI, same shape and affine as the inputs",
}


def _flags(manifest: Manifest) -> str:
    parts = [f"--{s} PATH" for s in manifest.inputs.required]
    parts += ["[" + " | ".join(f"--{s} PATH" for s in g) + "]" for g in manifest.inputs.one_of]
    return " ".join(parts)


def _example(manifest: Manifest) -> str:
    names = [*manifest.inputs.required, *(g[0] for g in manifest.inputs.one_of)]
    return " ".join(f"--{s} CASE/{s}.nii.gz" for s in names)


def neurofm_source_root() -> Path | None:
    """The source checkout neurofm runs from (``pyproject.toml`` beside ``src/``), if any."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "neurofm"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def build_wheel(dest: Path) -> Path:
    """Build a neurofm wheel into ``dest`` from a clean copy of the source (offline, no deps)."""
    root = neurofm_source_root()
    if root is None:
        raise NeuroFMError(None, "neurofm source tree not found; pass a wheel with --wheel")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="neurofm-wheel-") as tmp:
        src = Path(tmp) / "neurofm"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "src" / "neurofm",
            src / "src" / "neurofm",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        proc = subprocess.run(
            [*cmd, "--quiet", "-w", str(dest), str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise NeuroFMError(root, f"building the neurofm wheel failed: {' '.join(tail)}")
    wheels = sorted(dest.glob("neurofm-*.whl"))
    if not wheels:
        raise NeuroFMError(dest, "pip wheel produced no neurofm wheel")
    return wheels[-1]


def export_fomo25(
    package: Path,
    out: Path,
    *,
    wheel: Path | None = None,
    build: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the FOMO25 folder for ``package`` to ``out``; returns ``out``.

    ``wheel`` bundles a given neurofm wheel; otherwise one is built from the source tree when
    ``build`` is true, and when it is false ``wheels/`` is left empty with the step in README.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise NeuroFMError(out, "exists; pass --overwrite to replace it")
    with open_package(Path(package)) as pkg_dir:
        manifest = load_manifest(pkg_dir)
        check_integrity(pkg_dir, manifest)
        if manifest.runtime.entrypoint != INFER_ENTRYPOINT:
            raise NeuroFMError(
                pkg_dir / MANIFEST_NAME,
                "only packages built from a neurofm run (neurofm package build) can be exported",
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
        try:
            shutil.copytree(pkg_dir / MODEL_DIR, tmp / MODEL_DIR)
            shutil.copyfile(pkg_dir / MANIFEST_NAME, tmp / MANIFEST_NAME)
            wheels = tmp / "wheels"
            wheels.mkdir()
            if wheel is not None:
                if not Path(wheel).is_file():
                    raise NeuroFMError(wheel, "wheel file does not exist")
                shutil.copyfile(wheel, wheels / Path(wheel).name)
                wheel_note = f"`wheels/` holds `{Path(wheel).name}`."
            elif build:
                built = build_wheel(wheels)
                wheel_note = f"`wheels/` holds `{built.name}`, built from the neurofm source."
            else:
                wheel_note = (
                    "First put a neurofm wheel into `wheels/`: from a neurofm checkout run "
                    "`python -m pip wheel --no-deps . -w <this folder>/wheels`."
                )
            values = {
                "name": manifest.name,
                "package_id": manifest.id,
                "version": manifest.version,
                "task": manifest.task,
                "track": manifest.track,
                "license": manifest.license,
                "flags": _flags(manifest),
                "example": _example(manifest),
                "suffix": manifest.output_suffix,
                "output_desc": _OUTPUT_DESC[manifest.outputs.kind],
                "wheel_note": wheel_note,
            }
            templates = resources.files("neurofm.packages") / "templates"
            for name in TEMPLATES:
                text = Template((templates / name).read_text(encoding="utf-8"))
                (tmp / name).write_text(text.substitute(values), encoding="utf-8")
            (tmp / "predict.py").chmod(0o755)
            publish_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out
